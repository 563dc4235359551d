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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with every flag's default, except where it says nothing (None, a switch that is off
    unless given) or the help text already gives it."""

    def _get_help_string(self, action):
        silent = action.default is None or (action.nargs == 0 and action.default is False)
        if silent or 'default:' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def make_parser(description, alias_note=True):
    """The argument parser of every script: defaults shown in --help, and (for scripts with flags
    such as --img_h) a note that each flag takes both spellings (see `add_flag`)."""
    note = ('Every flag whose name has "-" or "_" also takes the other spelling (--img-h for --img_h, '
            '--data_path for --data-path); --help lists the first.')
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter,
                                   epilog=note if alias_note else None)


class _OtherSpelling(argparse.Action):
    """The other spelling of one of a flag's option strings, hidden from --help: it parses its
    arguments as the flag does, then hands them to the flag's own action under the flag's spelling
    (so --no_channels_last does what --no-channels-last does)."""

    def __init__(self, option_strings, dest, flag=None, spelling=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.flag, self.spelling = flag, spelling

    def __call__(self, parser, namespace, values, option_string=None):
        self.flag(parser, namespace, values, self.spelling)


def add_flag(parser, name, **kwargs):
    """`parser.add_argument(name, **kwargs)` (on a parser or an argument group) that also accepts the
    other spelling of each of the flag's option strings, "-" and "_" swapped after the leading "--"
    (--img-h for --img_h, --data_path for --data-path), as a hidden alias: the release's names keep
    working, the other spelling works too, and --help lists each flag once. Returns the flag's action."""
    action = parser.add_argument(name, **kwargs)
    swap = str.maketrans('-_', '_-')
    for spelling in action.option_strings:
        other = spelling[:2] + spelling[2:].translate(swap)
        if other == spelling:
            continue
        if action.required:
            raise ValueError(f'{name}: a required flag cannot have an alias (argparse would still ask for '
                             f'{name} when {other} is given); check it after parsing instead')
        parser.add_argument(other, action=_OtherSpelling, flag=action, spelling=spelling, dest=action.dest,
                            nargs=action.nargs, const=action.const, type=action.type, choices=action.choices,
                            metavar=action.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return action


def add_common_args(parser, training=False):
    """The release's flags, shared by train.py and test.py (same names and defaults)."""
    data = parser.add_argument_group('data')
    add_flag(data, '--dataset', default='sysu', choices=('sysu', 'regdb', 'llcm'), help='dataset name')
    add_flag(data, '--data-path', default=None, metavar='DIR',
             help='dataset root (default: ./Datasets/SYSU-MM01/, ./Datasets/RegDB/ or ./Datasets/LLCM/, '
                  'by --dataset)')
    add_flag(data, '--mode', default='all', choices=('all', 'indoor'),
             help='SYSU-MM01 search mode: gallery cameras 1, 2, 4, 5 (all) or 1, 2 (indoor)')
    add_flag(data, '--tvsearch', type=str2bool, nargs='?', const=True, default=False, metavar='True|False',
             help='True (or the bare flag): thermal (RegDB) or infrared (LLCM) queries against the visible '
                  "gallery; False: RegDB visible -> thermal, LLCM the release's \"VIS to IR\". SYSU-MM01 is "
                  'always infrared -> visible')
    add_flag(data, '--img_w', default=192, type=int, help='image width in pixels')
    add_flag(data, '--img_h', default=384, type=int, help='image height in pixels')
    add_flag(data, '--test-batch', default=64, type=int, help='test batch size (images)')
    add_flag(data, '--workers', default=4, type=int, help='data loading processes; 0 loads in the main process')

    model = parser.add_argument_group('model and checkpoints')
    add_flag(model, '--arch', default='resnet50', choices=('resnet50',), help='backbone')
    if training:
        add_flag(model, '--resume', default='', metavar='FILE',
                 help='checkpoint to continue from: a path, or a file name under --model_path; '
                      '<run>_last.t continues exactly (default: start afresh)')
    else:
        add_flag(model, '--resume', required=True, metavar='FILE',
                 help="checkpoint to evaluate: a path, or a file name under --model_path; for RegDB "
                      "'{trial}' in it is replaced by each split's number (1..10)")
    add_flag(model, '--model_path', default='save_model/', metavar='DIR',
             help='folder of checkpoints' + (' (written by train.py)' if training else ''))
    add_flag(model, '--gpu', default='0',
             help="CUDA device(s) to use, e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES); 'cpu' or '' runs on "
                  'the CPU, as does any run where no CUDA device is visible')
    add_flag(model, '--se-channels', type=parse_se_channels, default=None, metavar='A,B,C',
             help="the release squeeze-excitation's three middle-modality channels, for a checkpoint that "
                  'stores none (a release checkpoint) or a new run (default: the checkpoint\'s, else this '
                  "device's torch.topk tie order: 3,5,4 on CPU)")

    speed = parser.add_argument_group('speed')
    add_flag(speed, '--channels-last', action=argparse.BooleanOptionalAction, default=True,
             help='run the network in the channels_last memory format (faster on CPU and on GPUs with '
                  'tensor cores; the same numbers up to float rounding)')
    add_flag(speed, '--amp', action='store_true',
             help='mixed precision: on CUDA bfloat16 where supported, else float16 with gradient scaling; '
                  'on a CPU with native bfloat16 (AVX512-BF16, AMX) bfloat16, elsewhere ignored')

    title = 'training' if training else 'training flags (accepted so release command lines work; unused by test.py)'
    train = parser.add_argument_group(title)
    add_flag(train, '--lr', default=0.1, type=float, help='learning rate of the head; the rest gets 0.1x')
    add_flag(train, '--optim', default='sgd', choices=('sgd', 'adam'), help='optimizer')
    add_flag(train, '--batch-size', default=4, type=int, help='identities per training batch')
    add_flag(train, '--num_pos', default=4, type=int, help='images per identity and modality in a batch')
    add_flag(train, '--margin', default=0.3, type=float, help='triplet loss margin')
    add_flag(train, '--lambda_1', default=0.7, type=float, help='weight of the TCA loss')
    if training:
        add_flag(train, '--trial', default=1, type=int, help='RegDB split to train on (1..10)')
    else:
        add_flag(data, '--trial', default=None, type=int,
                 help='RegDB: evaluate this split only, the same as --trials N (default: all ten)')
    add_flag(train, '--seed', default=0, type=int, help='random seed')
    add_flag(train, '--save_epoch', default=20, type=int,
             help="also keep the weights of every epoch above 10 that is a multiple of this, the release's rule "
                  '(epochs 20, 40, ..., 120)')
    add_flag(train, '--log_path', default='log/', metavar='DIR', help='folder of text logs')
    add_flag(train, '--vis_log_path', default='log/vis_log/', metavar='DIR', help='folder of TensorBoard logs')
    return parser


def resolve_data_path(dataset, data_path):
    """--data-path, or the dataset's default root; refuses a path that is not a folder, saying
    whether it was given or the default."""
    path = data_path or DEFAULT_DATA_PATHS[dataset]
    if not os.path.isdir(path):
        problem = 'is a file, not a folder' if os.path.exists(path) else 'does not exist'
        if data_path:
            raise ReIDError(f'--data-path {path} {problem}; expected the {dataset} dataset root folder '
                            '(see the README for its layout)')
        raise ReIDError(f'no --data-path given, and the default {dataset} root {path} {problem}: '
                        'pass --data-path with the dataset root folder')
    return path


def check_counts(args, minimums):
    """Refuse a count below its minimum, e.g. {'--batch-size': 1}; the flag is named as --help shows it."""
    for flag, minimum in minimums.items():
        value = getattr(args, flag[2:].replace('-', '_'))
        if value < minimum:
            raise ReIDError(f'{flag} must be at least {minimum}, got {value}')


def select_device(gpu):
    """--gpu 'cpu' or '': the CPU. Otherwise CUDA_VISIBLE_DEVICES=gpu and CUDA if a device is then
    visible, else the CPU (and say so). None leaves CUDA_VISIBLE_DEVICES as it is."""
    if gpu is not None and str(gpu).strip().lower() in ('', 'cpu'):
        print('running on the CPU (--gpu cpu)', flush=True)
    else:
        if gpu is not None:
            os.environ['CUDA_VISIBLE_DEVICES'] = str(gpu)
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True   # fixed input sizes: let cuDNN pick its fastest kernels
            return torch.device('cuda')
        print('no CUDA device visible: running on the CPU', flush=True)
    # Denormal floats in the gradients can slow CPU steps down several times over.
    torch.set_flush_denormal(True)
    return torch.device('cpu')


def cpu_has_native_bf16():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bfloat16 autocast is
    faster than float32; elsewhere it is emulated and slower. torch.cpu's probes are private, so a
    torch without them counts as no."""
    probes = [getattr(torch.cpu, name, None) for name in ('_is_avx512_bf16_supported', '_is_amx_tile_supported')]
    return any(probe() for probe in probes if probe is not None)


def autocast_dtype(amp, device):
    """The dtype `--amp` runs the network in on `device` (None: float32). CUDA: bfloat16 where the GPU
    supports it (no gradient scaling needed), else float16 (with a GradScaler). CPU: bfloat16 where
    the CPU computes it natively (measured faster; see the README), else --amp is ignored."""
    if not amp:
        return None
    if device.type == 'cuda':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_has_native_bf16():
        print('note: --amp on the CPU: bfloat16 autocast (this CPU computes bfloat16 natively)', flush=True)
        return torch.bfloat16
    print('note: --amp is ignored on this CPU (no native bfloat16, so it would be slower): running in float32',
          flush=True)
    return None


def autocast(device, dtype):
    """Mixed precision in `dtype` on `device`, or nothing for dtype None (float32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def memory_format(channels_last):
    return torch.channels_last if channels_last else torch.contiguous_format


def parse_se_channels(text):
    """--se-channels a,b,c: three distinct channel indices in 0..5."""
    try:
        channels = tuple(int(c) for c in text.split(','))
    except ValueError:
        channels = ()
    if len(channels) != 3 or len(set(channels)) != 3 or not all(0 <= c <= 5 for c in channels):
        raise argparse.ArgumentTypeError(f'expected three distinct channel indices in 0..5 such as 3,5,4, '
                                         f'got {text!r}')
    return channels


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
