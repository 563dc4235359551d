"""Small shared helpers: the project's error type, atomic file writes, logging, checkpoints."""
import argparse
import contextlib
import os
import re
import sys
import tempfile

import numpy as np
import torch


class ReIDError(Exception):
    """A problem with the user's input (paths, files, checkpoints) that deserves a plain message."""


def current_umask():
    """The process's umask (read from /proc where it can be, since setting it to read it is not
    thread-safe)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file_beside(path):
    """A new temporary file next to `path` (same file system, so `os.replace` onto `path` is atomic),
    returned as (fd, name). Its mode is the one the umask gives any new file (0644 under umask 022),
    not mkstemp's private 0600, so the file that replaces `path` is as readable as one made by open()."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return fd, tmp


def atomic_write(path, write_fn, mode='wb'):
    """Write `path` through `write_fn(file_object)` so that readers see the old file or the new one.

    The data goes to a temporary file in the same directory (same file system), is flushed to
    disk, and then replaces `path` in one `os.replace`; an interruption leaves `path` untouched.
    """
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run_main(main):
    """Run a script's `main()`, turning a ReIDError into a one-line message and exit status 2."""
    try:
        main()
    except ReIDError as err:
        # An error raised in a DataLoader worker comes back with the worker's traceback in its
        # text; its last line is the message.
        message = str(err).strip().splitlines()[-1] if 'Original Traceback' in str(err) else str(err)
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- checkpoints
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


def read_checkpoint(path):
    """Load a checkpoint file (ours or the release's) as a dict, without running code from it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ReIDError(f'checkpoint not found: {path}')
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise ReIDError(f'cannot read checkpoint {path}: {err}') from err
    if isinstance(ckpt, dict) and 'net' not in ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {'net': ckpt}  # a bare state_dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('net'), dict):
        raise ReIDError(f'{path} is not an IFALNet checkpoint: expected a dict with a "net" state_dict')
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    ckpt['net'] = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt['net'].items()}
    return ckpt


def checkpoint_model_args(ckpt, source='checkpoint'):
    """The `embed_net` arguments a checkpoint was trained with: class count and SE variant."""
    state = ckpt['net']
    for key in ('classifier.weight', 'SEnet.fc.0.weight'):
        if key not in state:
            raise ReIDError(f'{source} has no {key}: not an IFALNet checkpoint')
    return {'class_num': state['classifier.weight'].shape[0],
            'working_se': state['SEnet.fc.0.weight'].shape[0] > 0}


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


# ----------------------------------------------------------------------------- command line
DEFAULT_DATA_PATHS = {'sysu': './Datasets/SYSU-MM01/', 'regdb': './Datasets/RegDB/', 'llcm': './Datasets/LLCM/'}


def str2bool(text):
    value = str(text).strip().lower()
    if value in ('true', '1', 'yes', 'y'):
        return True
    if value in ('false', '0', 'no', 'n'):
        return False
    raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')


def add_common_args(parser, training=False):
    """The release's flags, shared by train.py and test.py (same names and defaults)."""
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default='sysu', choices=('sysu', 'regdb', 'llcm'), help='dataset name')
    data.add_argument('--data-path', dest='data_path', default=None,
                      help='dataset root (default ./Datasets/SYSU-MM01/, ./Datasets/RegDB/ or ./Datasets/LLCM/)')
    data.add_argument('--mode', default='all', choices=('all', 'indoor'), help='SYSU-MM01 search mode')
    data.add_argument('--tvsearch', type=str2bool, nargs='?', const=True, default=False,
                      help='True: thermal/infrared queries against the visible gallery (RegDB, LLCM); '
                           "False (default): RegDB visible -> thermal, LLCM the release's \"VIS to IR\"")
    data.add_argument('--img_w', default=192, type=int, help='image width')
    data.add_argument('--img_h', default=384, type=int, help='image height')
    data.add_argument('--test-batch', dest='test_batch', default=64, type=int, help='test batch size (images)')
    data.add_argument('--workers', default=4, type=int, help='data loading processes')

    model = parser.add_argument_group('model and checkpoints')
    model.add_argument('--arch', default='resnet50', choices=('resnet50',), help='backbone')
    model.add_argument('--resume', default='', help='checkpoint path, or a file name under --model_path')
    model.add_argument('--model_path', default='save_model/', help='folder of checkpoints')
    model.add_argument('--gpu', default='0', help='CUDA device(s) to use (CUDA_VISIBLE_DEVICES); '
                                                  'the CPU is used when none is visible')

    title = 'training' if training else 'training flags (accepted so release command lines work; unused by test.py)'
    train = parser.add_argument_group(title)
    train.add_argument('--lr', default=0.1, type=float, help='learning rate of the head; the rest gets 0.1x')
    train.add_argument('--optim', default='sgd', choices=('sgd', 'adam'), help='optimizer')
    train.add_argument('--batch-size', dest='batch_size', default=4, type=int,
                       help='identities per training batch')
    train.add_argument('--num_pos', default=4, type=int, help='images per identity and modality in a batch')
    train.add_argument('--margin', default=0.3, type=float, help='triplet loss margin')
    train.add_argument('--lambda_1', default=0.7, type=float, help='weight of the TCA loss')
    train.add_argument('--trial', default=1, type=int, help='RegDB split to train on (1..10)')
    train.add_argument('--seed', default=0, type=int, help='random seed')
    train.add_argument('--save_epoch', default=20, type=int, help='also save a checkpoint every this many epochs')
    train.add_argument('--log_path', default='log/', help='folder of text logs')
    train.add_argument('--vis_log_path', default='log/vis_log/', help='folder of TensorBoard logs')
    return parser


def resolve_data_path(dataset, data_path):
    path = data_path or DEFAULT_DATA_PATHS[dataset]
    if not os.path.isdir(path):
        raise ReIDError(f'data root {path} not found: pass --data-path with the {dataset} dataset '
                        f'folder (see the README for the expected layout)')
    return path


def select_device(gpu):
    """CUDA if a device is visible after applying --gpu, else the CPU (and say so)."""
    if gpu not in (None, ''):
        os.environ['CUDA_VISIBLE_DEVICES'] = str(gpu)
    if torch.cuda.is_available():
        return torch.device('cuda')
    print('no CUDA device visible: running on the CPU', flush=True)
    return torch.device('cpu')


class Tee:
    """A text stream that writes to the console and to a log file."""

    def __init__(self, console, file):
        self.console, self.file = console, file

    def write(self, text):
        self.console.write(text)
        self.file.write(text)

    def flush(self):
        self.console.flush()
        self.file.flush()


@contextlib.contextmanager
def tee_stdout(path):
    """Copy everything printed inside the block to `path` (appended to, so a resumed run keeps its
    history)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    console = sys.stdout
    with open(path, 'a', buffering=1) as f:
        sys.stdout = Tee(console, f)
        try:
            yield
        finally:
            sys.stdout = console
