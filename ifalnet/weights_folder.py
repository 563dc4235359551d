"""A trained network shared the way the ecosystem shares models: a folder in the Hugging Face Hub's
layout, written by `export.py --format safetensors` and read wherever a checkpoint is read
(test.py --resume FOLDER, visualize.py, export.py, hubconf.py). Reading it runs no code: json and
safetensors only, no pickle.

    model.safetensors   the network's state_dict, both branches, with the classifier or without it
                        (float32 weights, int64 BatchNorm counters); its header's metadata holds the
                        content of config.json (key "ifalnet"), so the file alone rebuilds the network
    config.json         {"model_type": "ifalnet", "format_version": 1, "arch", "architecture"
                        (model.Architecture), "class_num", "classifier" (whether the weights hold it),
                        "working_se", "se_channels", "image_size": {"height", "width"}, "normalization":
                        {"resize", "scale", "mean", "std"}, "feature_dim", "source": {"file", "sha256",
                        "epoch", "cmc", "mAP", "mINP"}, "training_args", "held_out", "dataset_copy",
                        "trained_with" (the checkpoint's environment stamp), "environment" (the export's)}
    README.md           the model card (ifalnet/hub_card.py)
    checksums.sha256    the sha256 of the three files above, in sha256sum's format
                        (`sha256sum -c checksums.sha256` checks them)

`write_folder` writes it atomically (a temporary folder moved into place; an earlier export in the
same place is replaced, any other folder refused). `read_weights` checks a folder before anything is
loaded: every checksum (a changed byte names the file and both hashes), config.json against the copy
inside model.safetensors, and config.json against the weights' names and shapes (without reading
the tensors); it returns the weights as a checkpoint dict (checkpoints.py builds the network from it
as from any checkpoint). A lone `.safetensors` file written here (its config in its header) reads
the same way, without checksums. safetensors is optional (requirements-share.txt).
"""
import hashlib
import json
import os
import shutil
import tempfile

import torch

from data_loader import IMAGENET_MEAN, IMAGENET_STD
from ifalnet.atomic import current_umask
from ifalnet.optional_extras import require_extra
from model import Architecture, embed_net
from utils import ReIDError

WEIGHTS, CONFIG, CARD, CHECKSUMS = 'model.safetensors', 'config.json', 'README.md', 'checksums.sha256'
FILES = (WEIGHTS, CONFIG, CARD)
MODEL_TYPE, FORMAT_VERSION = 'ifalnet', 1
METADATA_KEY = 'ifalnet'   # the key of config.json's copy in the safetensors header
CLASSIFIER = 'classifier.weight'
FEATURE_DIM = 2048
RELEASE_SIZE = (384, 192)   # the release's image size, for a checkpoint that does not say its own


def require_safetensors():
    """safetensors' torch functions, or a one-line error naming the pip command."""
    return require_extra('safetensors.torch', 'model folders (export.py --format safetensors, --resume FOLDER, '
                         'hubconf.py)', 'requirements-share.txt')


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def is_weights_path(path):
    """Whether `path` is read here: a folder, or a `.safetensors` file."""
    path = os.fspath(path)
    return os.path.isdir(path) or path.endswith('.safetensors')


# ----------------------------------------------------------------------------------------- writing
def make_config(net, record, source, classifier=True, environment=None):
    """config.json of network `net` loaded from `source` (a checkpoint file or folder), whose other
    entries are `record` (checkpoints.checkpoint_record: scores, training arguments, sha256, ...);
    `classifier` whether the weights keep the classifier; `environment` the export's stamp."""
    args = record.get('args') if isinstance(record.get('args'), dict) else None
    args = json.loads(json.dumps(args, default=str)) if args is not None else None
    height, width = ((args or {}).get('img_h'), (args or {}).get('img_w'))
    height, width = (height, width) if height and width else RELEASE_SIZE
    plain = lambda value: json.loads(json.dumps(value.tolist() if hasattr(value, 'tolist') else value, default=float))
    return {'model_type': MODEL_TYPE, 'format_version': FORMAT_VERSION, 'arch': 'resnet50',
            'architecture': net.architecture(), 'class_num': net.classifier.out_features, 'classifier': bool(classifier),
            'working_se': bool(net.middle and not net.SEnet.constant),
            'se_channels': list(net.se_channels) if net.se_channels is not None else None,
            'image_size': {'height': int(height), 'width': int(width)},
            'normalization': {'resize': 'LANCZOS, to (width, height)', 'scale': 'divide by 255',
                              'mean': list(IMAGENET_MEAN), 'std': list(IMAGENET_STD)},
            'feature_dim': FEATURE_DIM,
            'source': {'file': os.path.basename(os.path.normpath(source)), 'sha256': record['sha256'],
                       **{key: plain(record.get(key)) for key in ('epoch', 'cmc', 'mAP', 'mINP')}},
            'training_args': args, 'held_out': plain(record.get('held_out')),
            'dataset_copy': record.get('dataset_copy'), 'trained_with': record.get('environment'),
            'environment': environment}


def weights_of(net, classifier=True):
    """The tensors model.safetensors holds: the state_dict, contiguous on the CPU, without the classifier
    unless `classifier`."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items() if classifier or k != CLASSIFIER}


def _is_export(folder):
    """Whether `folder` holds an earlier export of this module and nothing else (it may be replaced)."""
    names = set(os.listdir(folder))
    return names and names <= {*FILES, CHECKSUMS} and CONFIG in names


def check_out_folder(out, flag='--out'):
    """Refuse, before any work, an --out that is a file or a folder with other content."""
    out = os.fspath(out)
    if os.path.isfile(out):
        raise ReIDError(f'{flag} {out} is a file; a model folder is written there (a new or empty folder, or an '
                        'earlier export, which is replaced)')
    if os.path.isdir(out) and os.listdir(out) and not _is_export(out):
        raise ReIDError(f'{flag} {out} is not empty and holds no earlier export (only {", ".join((*FILES, CHECKSUMS))}'
                        ' may be there), so it is left alone: choose a new or empty folder')


def checksums_text(hashes):
    return ''.join(f'{digest}  {name}\n' for name, digest in hashes.items())


def write_folder(out, weights, config, card):
    """Write the folder `out` atomically: model.safetensors (`weights`, with `config` in its header),
    config.json, README.md (`card(hashes)`, given the sha256 of the other two) and checksums.sha256.
    Returns {file: sha256}."""
    st = require_safetensors()
    out = os.path.normpath(os.fspath(out))
    check_out_folder(out)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(out)}.', suffix='.tmp')
    old = None
    try:
        text = json.dumps(config, indent=2) + '\n'
        st.save_file(weights, os.path.join(tmp, WEIGHTS), metadata={'format': 'pt', METADATA_KEY: json.dumps(config)})
        with open(os.path.join(tmp, CONFIG), 'w') as f:
            f.write(text)
        hashes = {name: sha256_of(os.path.join(tmp, name)) for name in (WEIGHTS, CONFIG)}
        with open(os.path.join(tmp, CARD), 'w') as f:
            f.write(card(hashes))
        hashes[CARD] = sha256_of(os.path.join(tmp, CARD))
        with open(os.path.join(tmp, CHECKSUMS), 'w') as f:
            f.write(checksums_text(hashes))
        for name in (*FILES, CHECKSUMS):   # as readable as any new file (safetensors writes its file private)
            os.chmod(os.path.join(tmp, name), 0o666 & ~current_umask())
        os.chmod(tmp, 0o777 & ~current_umask())
        if os.path.isdir(out):   # an earlier export, or an empty folder: moved aside, removed once the new one is in
            old = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(out)}.', suffix='.old')
            os.replace(out, os.path.join(old, 'previous'))
        os.replace(tmp, out)
        return hashes
    except OSError as err:
        if old is not None and not os.path.exists(out):
            os.replace(os.path.join(old, 'previous'), out)
        raise ReIDError(f'cannot write {out}: {err.strerror or err}') from None
    finally:
        for leftover in (tmp, old):
            if leftover is not None and os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


# ----------------------------------------------------------------------------------------- reading
def read_checksums(folder):
    """{file: sha256} of checksums.sha256, refusing a missing or malformed file."""
    path = os.path.join(folder, CHECKSUMS)
    if not os.path.isfile(path):
        raise ReIDError(f'{folder} has no {CHECKSUMS}: expected a folder written by export.py --format safetensors '
                        f'({", ".join((*FILES, CHECKSUMS))})')
    listed = {}
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or len(fields[0]) != 64 or any(c not in '0123456789abcdef' for c in fields[0]):
                raise ReIDError(f'{path}, line {number}: expected "<sha256>  <file>", got {line.strip()[:80]!r}')
            listed[fields[1].lstrip('*')] = fields[0]
    missing = [name for name in (WEIGHTS, CONFIG) if name not in listed]
    if missing:
        raise ReIDError(f'{path} lists no hash for {", ".join(missing)}')
    return listed


def verify_checksums(folder):
    """Check every file checksums.sha256 lists; a changed byte is refused naming the file and both hashes.
    Returns the verified {file: sha256}."""
    listed = read_checksums(folder)
    for name, expected in listed.items():
        path = os.path.join(folder, name)
        if os.path.dirname(name) or name in ('.', '..'):
            raise ReIDError(f'{os.path.join(folder, CHECKSUMS)} lists {name!r}: only files of the folder itself')
        if not os.path.isfile(path):
            raise ReIDError(f'{path} is missing (checksums.sha256 lists it)')
        actual = sha256_of(path)
        if actual != expected:
            raise ReIDError(f'{path} has sha256 {actual}, but {CHECKSUMS} lists {expected}: the file was changed or '
                            'damaged; nothing was loaded')
    return listed


def _parse_config(text, source):
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ReIDError(f'{source}: not JSON ({err}); expected the config.json export.py writes') from None
    if not isinstance(config, dict) or config.get('model_type') != MODEL_TYPE:
        raise ReIDError(f'{source}: not an IFALNet config (no "model_type": "{MODEL_TYPE}")')
    if config.get('format_version') != FORMAT_VERSION:
        raise ReIDError(f'{source}: format_version {config.get("format_version")!r}; this code reads version '
                        f'{FORMAT_VERSION}')
    problems = []
    if not isinstance(config.get('class_num'), int) or isinstance(config['class_num'], bool) or config['class_num'] < 1:
        problems.append('"class_num" must be a positive integer')
    for key in ('classifier', 'working_se'):
        if not isinstance(config.get(key), bool):
            problems.append(f'"{key}" must be true or false')
    channels = config.get('se_channels')
    if channels is not None and (not isinstance(channels, list) or len(channels) != 3
                                 or not all(isinstance(c, int) and 0 <= c < 6 for c in channels)):
        problems.append('"se_channels" must be null or three channel indices in 0..5')
    size = config.get('image_size')
    if not isinstance(size, dict) or not all(isinstance(size.get(k), int) and size[k] > 0 for k in ('height', 'width')):
        problems.append('"image_size" must be {"height": int, "width": int}')
    try:
        Architecture.from_dict(config.get('architecture'))
    except ValueError:
        problems.append('"architecture" must be {"middle": bool, "mia": [layers among 1, 2, 3], "mfa": bool}')
    if config.get('arch') != 'resnet50':
        problems.append('"arch" must be "resnet50"')
    if problems:
        raise ReIDError(f'{source}: ' + '; '.join(problems))
    return config


def expected_shapes(config):
    """{key: shape} of the weights the network of `config` has (built on the meta device: nothing allocated)."""
    with torch.device('meta'):
        net = embed_net(config['class_num'], arch=config['arch'], working_se=config['working_se'],
                        **Architecture.from_dict(config['architecture']).as_dict())
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if config['classifier'] or k != CLASSIFIER}


def _shape(shape):
    return 'x'.join(map(str, shape)) or 'scalar'


def check_fit(config, header, source):
    """Refuse weights whose names or shapes are not those of the network `config` describes, naming the keys."""
    expected = expected_shapes(config)
    problems = [f'missing from the weights: {k} ({_shape(s)})' for k, s in expected.items() if k not in header]
    problems += [f'not in the network: {k} ({_shape(s)})' for k, s in header.items() if k not in expected]
    problems += [f'shape differs: {k} (weights {_shape(s)}, config {_shape(expected[k])})'
                 for k, s in header.items() if k in expected and tuple(s) != expected[k]]
    if problems:
        shown = '; '.join(problems[:6]) + (f'; and {len(problems) - 6} more' if len(problems) > 6 else '')
        raise ReIDError(f'{source}: its config does not fit its weights ({len(problems)} differences: {shown})')


def read_weights(path):
    """A model folder (or a lone .safetensors file written here), checked as the module says, as a
    checkpoint dict: {'net': state_dict (a zero classifier when the weights leave it out), 'epoch',
    'cmc', 'mAP', 'mINP', 'se_channels', 'architecture', 'args', 'held_out', 'environment', 'dataset_copy', 'config', 'sha256'}."""
    st = require_safetensors()
    from safetensors import SafetensorError, safe_open
    path = os.path.normpath(os.fspath(path))
    folder = os.path.isdir(path)
    weights = os.path.join(path, WEIGHTS) if folder else path
    if folder:
        verified = verify_checksums(path)
    elif not os.path.isfile(path):
        raise ReIDError(f'model file not found: {path}')
    try:
        with safe_open(weights, framework='pt') as f:
            metadata = f.metadata() or {}
            header = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ReIDError(f'cannot read {weights} as safetensors ({str(err).splitlines()[0] if str(err) else type(err).__name__})'
                        '; expected the model.safetensors export.py writes') from None
    if METADATA_KEY not in metadata:
        raise ReIDError(f'{weights} holds no IFALNet config in its header: not written by export.py --format safetensors')
    embedded = _parse_config(metadata[METADATA_KEY], f'{weights} (its header)')
    config = embedded
    if folder:
        with open(os.path.join(path, CONFIG), encoding='utf-8', errors='replace') as f:
            config = _parse_config(f.read(), os.path.join(path, CONFIG))
        differ = sorted(k for k in set(config) | set(embedded) if config.get(k) != embedded.get(k))
        if differ:
            raise ReIDError(f'{path}: config.json and the config inside {WEIGHTS} differ in {", ".join(differ)}; '
                            're-export the checkpoint')
    check_fit(config, header, path)
    try:
        state = st.load_file(weights, device='cpu')
    except (SafetensorError, OSError, ValueError) as err:
        raise ReIDError(f'cannot read the tensors of {weights} ({err})') from None
    if not config['classifier']:   # the embeddings do not use it; a zero one keeps the class count
        state[CLASSIFIER] = torch.zeros(config['class_num'], FEATURE_DIM)
    source = config.get('source') if isinstance(config.get('source'), dict) else {}
    return {'net': state, **{key: source.get(key) for key in ('epoch', 'cmc', 'mAP', 'mINP')},
            'se_channels': config['se_channels'],
            'architecture': config['architecture'], 'args': config.get('training_args'),
            'held_out': config.get('held_out'), 'environment': config.get('trained_with'),
            'dataset_copy': config.get('dataset_copy'), 'config': config,
            'sha256': verified[WEIGHTS] if folder else sha256_of(weights)}
