"""Checkpoint files: reading them safely, writing them atomically, and fitting them to the model.

Owns the format of ours and of the release's: `read_checkpoint` (weights_only, with the numpy
objects a release checkpoint pickles allowed and nothing else), `save_checkpoint` (atomic),
`resolve_checkpoint` (a path or a name under --model_path), the model arguments a checkpoint
implies (`checkpoint_model_args`, with its component switches `checkpoint_architecture`), what it
was trained on (`trained_on`, `describe_training`) and the training arguments it stores
(`training_args`); `load_state`, which drops the release's unused weights and refuses any other
difference with a list of what differs; `load_checkpoint` (a file into a network) and `load_model`
(the network a checkpoint holds, ready to evaluate); `refuse_nonfinite` refuses weights that hold
NaN or inf; `checkpoint_record` / `checkpoint_sha256`, what a loaded network's file says of its
making and the hash that names it. Wherever a network is loaded (`load_model`, hence test.py, visualize.py and export.py), a
model folder of export.py --format safetensors (or its lone .safetensors file) is read as a
checkpoint too (weights_folder.py, no pickle).
"""
import json
import os
import re
import warnings

import numpy as np
import torch

from data_manager import DATASETS, dataset_info
from ifalnet.atomic import atomic_write
from ifalnet.devices import memory_format
from ifalnet.weights_folder import CONFIG, RELEASE_SIZE, is_weights_path, read_weights, sha256_of
from model import Architecture, embed_net
from utils import ReIDError, load_failure

# Weights the release stores but its forward pass never reads: layer1-4 of each of the four stems,
# the body's own stem, and the conv_narrow pair of the layer3 MIA. Our model does not create them.
RELEASE_UNUSED_KEYS = re.compile(r'^((visible|thermal)_module(A)?\.(visible|thermal)\.layer[1-4]\.'
                                 r'|base_resnet\.base\.(conv1|bn1)\.'
                                 r'|MIA3\.conv_narrow[12]\.)')


def _numpy_safe_globals():
    """The numpy objects a release checkpoint pickles ('cmc' is an ndarray, 'mAP'/'mINP' numpy
    scalars), under the module names of numpy 1.x and 2.x. Nothing else is allowed to unpickle."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    allowed = [np.ndarray, np.dtype] + [type(np.dtype(t)) for t in (np.float32, np.float64, np.int64)]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed += [(multiarray._reconstruct, f'{module}._reconstruct'), (multiarray.scalar, f'{module}.scalar')]
    return allowed


def read_checkpoint(path, mmap=False):
    """Load a checkpoint file (ours or the release's) as a dict, without running code from it;
    `mmap` maps the tensors instead of reading them (for a look at the other entries)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, 'config.json')):
            raise ReIDError(f'{path} is a model folder (export.py --format safetensors): it holds the network alone, '
                            'no optimizer state; expected a checkpoint file (.t)')
        raise ReIDError(f'{path} is a folder; expected a checkpoint file')
    if not os.path.isfile(path):
        raise ReIDError(f'checkpoint not found: {path}')
    if os.path.getsize(path) == 0:
        raise ReIDError(f'cannot read checkpoint {path}: the file is empty (0 bytes)')
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)   # torch's note on the pickle protocol
            ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except Exception as err:
        raise ReIDError(f'cannot read checkpoint {path}: {load_failure(err)}') from err
    if isinstance(ckpt, dict) and 'net' not in ckpt and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {'net': ckpt}  # a bare state_dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('net'), dict):
        raise ReIDError(f'{path} is not an IFALNet checkpoint: expected a dict with a "net" state_dict')
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    ckpt['net'] = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt['net'].items()}
    return ckpt


def nonfinite_tensors(state):
    """Names of the floating-point tensors of a state_dict that hold NaN or inf values."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def refuse_nonfinite(state, source, advice=': the training that wrote it diverged; use an earlier checkpoint'):
    """Refuse weights with NaN or inf values (a diverged run), naming the tensors."""
    bad = nonfinite_tensors(state)
    if bad:
        shown = ', '.join(bad[:5]) + (f' and {len(bad) - 5} more' if len(bad) > 5 else '')
        raise ReIDError(f'{source}: {len(bad)} of {len(state)} weight tensors hold NaN or inf values '
                        f'({shown}){advice}')


def checkpoint_architecture(ckpt, source='checkpoint'):
    """The component switches a checkpoint's network was built with (`model.Architecture.as_dict()`,
    stored by train.py as 'architecture'); a checkpoint without them (the release's, older ones) is
    the full model."""
    arch = ckpt.get('architecture')
    try:
        return Architecture.from_dict(arch).as_dict()
    except ValueError:
        raise ReIDError(f'{source}: its "architecture" entry {arch!r} is not one train.py writes '
                        "({'middle': bool, 'mia': [layers among 1, 2, 3], 'mfa': bool}): a damaged checkpoint") from None


def checkpoint_model_args(ckpt, source='checkpoint'):
    """The `embed_net` arguments a checkpoint was trained with: class count, SE variant and the
    component switches (`checkpoint_architecture`)."""
    state, arch = ckpt['net'], checkpoint_architecture(ckpt, source)
    for key in ('classifier.weight',) + (('SEnet.fc.0.weight',) if arch['middle'] else ()):
        if key not in state:
            raise ReIDError(f'{source} has no {key}: not an IFALNet checkpoint')
    working = arch['middle'] and state['SEnet.fc.0.weight'].shape[0] > 0
    return {'class_num': state['classifier.weight'].shape[0], 'working_se': working, **arch}


def trained_on(ckpt):
    """What a checkpoint was trained on, from the arguments train.py stores with it: dataset, RegDB
    split, image size and epoch, None where it does not say (a release checkpoint stores no
    arguments); `held_out`, only for a checkpoint of train.py --select val, the number of training
    identities it held out."""
    args = ckpt.get('args') if isinstance(ckpt.get('args'), dict) else {}
    dataset = args.get('dataset')
    held_out = {'held_out': len(ckpt['held_out'])} if ckpt.get('held_out') else {}
    split = dataset in DATASETS and dataset_info(dataset).split_trials   # RegDB: the split it was trained on
    return {'dataset': dataset, 'trial': args.get('trial') if split else None,
            'img_h': args.get('img_h'), 'img_w': args.get('img_w'), 'epoch': ckpt.get('epoch'), **held_out}


def training_args(ckpt):
    """The training arguments a checkpoint stores (train.py's `vars(args)`), as JSON values (tuples
    as lists, anything else as its text), or None for a checkpoint that stores none (the release's)."""
    args = ckpt.get('args')
    if not isinstance(args, dict):
        return None
    return json.loads(json.dumps(args, default=str))


def describe_training(info):
    """`trained_on` in words: 'dataset RegDB split 2, 64x32 images, epoch 9'."""
    unknown = 'unknown'
    dataset = (DATASETS[info['dataset']].name if info['dataset'] in DATASETS else unknown) + (f' split {info["trial"]}' if info['trial'] else '')
    size = f'{info["img_h"]}x{info["img_w"]} images' if info['img_h'] and info['img_w'] else f'image size {unknown}'
    epoch = f'epoch {info["epoch"]}' if info['epoch'] is not None and info['epoch'] >= 0 else (
        'untrained (epoch -1)' if info['epoch'] is not None else f'epoch {unknown}')
    note = '' if info['dataset'] else ' (the checkpoint stores no training arguments, as the release\'s do not)'
    held_out = (f', selected on {info["held_out"]} held-out training identities (--select val)'
                if info.get('held_out') else '')
    return f'dataset {dataset}, {size}, {epoch}{held_out}{note}'


def load_state(net, state, source):
    """Load `state` into `net`; drop (and say so) the unused weights of a release checkpoint and
    refuse any other difference with a list of the keys and shapes involved."""
    unused = [k for k in state if RELEASE_UNUSED_KEYS.match(k)]
    if unused:
        print(f'{source}: release checkpoint; ignoring {len(unused)} stored weights its forward pass '
              f'never uses (layer1-4 of the four stems, the body stem, MIA3.conv_narrow1/2)')
        state = {k: v for k, v in state.items() if not RELEASE_UNUSED_KEYS.match(k)}
    own = net.state_dict()
    shape = lambda t: 'x'.join(map(str, t.shape)) or 'scalar'
    problems = [f'  missing from checkpoint: {k} ({shape(v)})' for k, v in own.items() if k not in state]
    problems += [f'  not in model: {k} ({shape(v)})' for k, v in state.items() if k not in own]
    problems += [f'  shape differs: {k}: checkpoint {shape(v)}, model {shape(own[k])}'
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    if problems:
        shown = problems[:20] + ([f'  ... and {len(problems) - 20} more'] if len(problems) > 20 else [])
        raise ReIDError(f'{source} does not fit this model ({len(problems)} differences):\n' + '\n'.join(shown))
    net.load_state_dict(state)


def load_checkpoint(path, net):
    """Load one of our checkpoints or a release checkpoint into `net`; returns the checkpoint dict."""
    ckpt = read_checkpoint(path)
    load_state(net, ckpt['net'], os.fspath(path))
    return ckpt


def save_checkpoint(ckpt, path):
    """torch.save, atomically (an interrupted save leaves the previous file intact)."""
    atomic_write(path, lambda f: torch.save(ckpt, f))


def resolve_checkpoint(resume, model_path, trial=None):
    """`--resume` is a path, or a name under `--model_path` as in the release; `{trial}` is filled in.
    A model folder (export.py --format safetensors: it has a config.json) is taken as it is. A missing
    `<run>_best.t` whose `<run>_last.t` is there says so."""
    name = resume.replace('{trial}', str(trial)) if trial is not None else resume
    candidates = (name, os.path.join(model_path, name))
    for candidate in candidates:
        if os.path.isfile(candidate) or os.path.isfile(os.path.join(candidate, CONFIG)):
            return candidate
        if os.path.isdir(candidate):
            raise ReIDError(f'{candidate} is a folder; expected a checkpoint file, or a model folder of export.py '
                            f'--format safetensors (it has no {CONFIG})')
    lasts = [c[:-len('_best.t')] + '_last.t' for c in candidates if c.endswith('_best.t')]
    last = next((p for p in lasts if os.path.isfile(p)), None)
    hint = (f'; {last} is there: a run validates after every epoch but the first and keeps its best as _best.t, so '
            'a one-epoch run has none; test its _last.t, or train longer') if last else ''
    raise ReIDError(f'checkpoint not found: {name} (also looked in --model_path {model_path}){hint}')


def input_size(trained_on, img_h, img_w, source, doing='testing'):
    """The image size (h, w) to run checkpoint `source` at: --img_h/--img_w where given, else the size
    its training arguments store (`trained_on`), else the release's. Says which, and warns when a given
    size differs from the checkpoint's own; `doing` names the work ('testing', 'exporting')."""
    own = (trained_on['img_h'], trained_on['img_w']) if trained_on['img_h'] and trained_on['img_w'] else None
    given = (img_h, img_w)
    size = tuple(g or d for g, d in zip(given, own or RELEASE_SIZE))
    if given == (None, None):
        print(f'{doing} at {size[0]}x{size[1]}: ' + ("the checkpoint's own size" if own else
              "the release's size (the checkpoint does not say its own)") + '; --img_h/--img_w choose another',
              flush=True)
    elif own and size != own:
        print(f'warning: {doing} at {size[0]}x{size[1]} but {source} was trained at {own[0]}x{own[1]}: the scores '
              f'will be lower than the model\'s; leave out --img_h/--img_w to use its own size', flush=True)
    return size


# What a checkpoint holds besides the weights and the state an exact resume needs.
RECORD_KEYS = ('epoch', 'cmc', 'mAP', 'mINP', 'se_channels', 'architecture', 'args', 'held_out', 'environment',
               'dataset_copy')


def checkpoint_record(ckpt):
    """The entries of `ckpt` other than weights and resume state (RECORD_KEYS; None where absent), and
    'sha256': a model folder's (its verified model.safetensors), None for a checkpoint file until
    `checkpoint_sha256` hashes it."""
    return {**{key: ckpt.get(key) for key in RECORD_KEYS}, 'sha256': ckpt.get('sha256')}


def checkpoint_sha256(net, path):
    """The sha256 that names what network `net` was loaded from (`path`): the checkpoint file's, hashed
    once when first asked for (it costs a read of the file), or a model folder's model.safetensors'."""
    if net.record['sha256'] is None:
        net.record['sha256'] = sha256_of(path)
    return net.record['sha256']


def read_any(path):
    """A checkpoint file, or a model folder / .safetensors file (weights_folder.read_weights), as a checkpoint dict."""
    return read_weights(path) if is_weights_path(path) else read_checkpoint(path)


def load_model(path, device, arch='resnet50', se_channels=None, channels_last=True, verbose=True):
    """The network of checkpoint (or model folder) `path` on `device`. The release squeeze-excitation's
    channels are `se_channels` if given, else the ones the checkpoint stores, else (a release
    checkpoint) the topk tie order of `device`; they are printed (`verbose`: what was loaded and
    how). The network also carries what the file says of its making: `trained_on`, `training_args`
    and `record` (`checkpoint_record`)."""
    say = print if verbose else (lambda *args, **kwargs: None)
    ckpt = read_any(path)
    refuse_nonfinite(ckpt['net'], path)
    net = embed_net(arch=arch, **checkpoint_model_args(ckpt, path))
    load_state(net, ckpt['net'], path)
    epoch = ckpt.get('epoch')
    say(f'loaded {path}' + (f' (epoch {epoch})' if epoch is not None else ''), flush=True)
    net = net.to(device, memory_format=memory_format(channels_last))
    net.trained_on = trained_on(ckpt)   # what test.py checks against what it is asked to test
    net.training_args = training_args(ckpt)   # recorded in test.py's results file (tables.py groups runs by them)
    net.record = checkpoint_record(ckpt)   # what else the file says: scores, environment, dataset copy, hash
    stored = tuple(ckpt['se_channels']) if ckpt.get('se_channels') is not None else None
    if not net.middle:
        if se_channels:
            raise ReIDError(f'--se-channels chooses middle-modality channels; {path} is a network without the '
                            'middle modality (trained with --no-middle)')
        say(f'network: {net.config.describe()}', flush=True)
        return net
    if net.config != Architecture():
        say(f'network: {net.config.describe()}', flush=True)
    if not net.SEnet.constant:
        if se_channels:
            raise ReIDError(f'--se-channels applies to the release squeeze-excitation only; {path} has the '
                            'working one, which picks its channels per sample')
        return net
    if se_channels and stored and tuple(se_channels) != stored:
        say(f'warning: {path} was trained with middle-modality channels {",".join(map(str, stored))}; '
              f'using --se-channels {",".join(map(str, se_channels))} instead')
    channels = net.SEnet.set_channels(se_channels or stored)
    source = ('--se-channels' if se_channels else 'stored in the checkpoint' if stored
              else "this device's torch.topk tie order; the checkpoint stores none")
    say(f'middle-modality channels: {",".join(map(str, channels))} ({source})', flush=True)
    return net
