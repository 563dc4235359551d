"""The command line of every script: the parser, flags with both spellings, the shared flags.

`make_parser` (defaults shown in --help), `add_flag` (each flag also takes its other spelling,
"-" and "_" swapped), `add_common_args` (the release's flags that train.py and test.py share),
`add_component_args` (train.py's ablation switches, from the records `model.Architecture` and
`loss.LossSwitches`), their value parsers (`str2bool`, `parse_mia`, `parse_se_channels`), the checks
made right after parsing (`check_counts`, `resolve_data_path`), and which training arguments are
bookkeeping (`BOOKKEEPING`). The records of model.py and loss.py (and with them torch) are imported
only where they are read, so a script that runs no network parses its flags without torch.
"""
import argparse
import dataclasses
import difflib
import math
import os
import warnings

from data_manager import DATASETS
from utils import ReIDError

# The two network branches as the command lines name them (model.Modal.named): every dataset's
# infrared images go through the thermal branch.
MODALITIES = ('visible', 'thermal')
# train.py --dist-backend (ifalnet/ddp.py): auto = NCCL on CUDA, gloo on the CPU.
DIST_BACKENDS = ('auto', 'nccl', 'gloo')
# export.py: the file formats (one branch per ONNX or TorchScript file, ifalnet/deploy.py; the whole
# network as a safetensors model folder, ifalnet/weights_folder.py), the ONNX opset, and the largest
# |difference| an exported file may have from the PyTorch model.
EXPORT_FORMATS = ('onnx', 'torchscript', 'safetensors')
DEFAULT_OPSET = 17
EXPORT_TOLERANCE = 1e-4
# Training arguments that name where a run's files go, which device ran it, how it logged, or that it
# was resumed: not part of what is trained, so runs that differ in them alone are one configuration
# (train.py's refusal of an existing run, tables.py's rows).
BOOKKEEPING = ('run_name', 'resume', 'model_path', 'log_path', 'vis_log_path', 'data_path', 'gpu', 'workers',
               'test_batch', 'print_freq', 'overwrite', 'dist_timeout', 'dist_backend', 'save_epoch')


def usable_cpus():
    """The CPUs this process may run on (its affinity, which a scheduler or container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def workers_note(workers):
    """One note when --workers exceeds the CPUs this process may use (the release's default 4 on a
    smaller machine), or None. torch's own warning, which every DataLoader repeats, is filtered from
    then on: the note says it once. The default stays the release's, as every release flag's does; the
    worker count changes the speed only (each training item draws from generators of its own)."""
    cpus = usable_cpus()
    if workers <= cpus:
        return None
    warnings.filterwarnings('ignore', message=r'This DataLoader will create \d+ worker processes in total')
    return (f'note: --workers {workers} loader processes share the {cpus} CPUs this process may use; '
            f'--workers {cpus} avoids the oversubscription (the results are the same either way)')


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
    """The argument parser of every script: defaults shown in --help, no abbreviations (a prefix of a
    flag is an error, not that flag), and (for scripts with flags such as --img_h) a note that each
    flag takes both spellings (see `add_flag`)."""
    note = ('Every flag whose name has "-" or "_" also takes the other spelling (--img-h for --img_h, '
            '--data_path for --data-path); --help lists the first.')
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter,
                                   epilog=note if alias_note else None, allow_abbrev=False)


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
    add_flag(data, '--dataset', default='sysu', choices=tuple(DATASETS), help='dataset name')
    add_flag(data, '--data-path', default=None, metavar='DIR',
             help=f'dataset root (default: {", ".join(d.default_path for d in DATASETS.values())}, by --dataset)')
    add_flag(data, '--mode', default='all', choices=('all', 'indoor'),
             help='SYSU-MM01 search mode: gallery cameras 1, 2, 4, 5 (all) or 1, 2 (indoor)')
    add_flag(data, '--tvsearch', type=str2bool, nargs='?', const=True, default=False, metavar='True|False',
             help='the direction tested. RegDB: False (default) visible -> thermal, the release\'s; True (or the bare '
                  "flag) thermal -> visible. LLCM: False (default) the release's \"VIS to IR\", which is in fact "
                  'infrared -> visible (sampled infrared queries, every visible image in the gallery, its pool-term '
                  'quirk); True infrared -> visible (every infrared query, sampled visible gallery); visible -> '
                  'infrared is --protocol standard. SYSU-MM01: always infrared -> visible')
    # test.py: the checkpoint's own size unless given (see test.py's `fit_to_checkpoint`)
    size = '' if training else " (default: the checkpoint's, else {})"
    add_flag(data, '--img_w', default=192 if training else None, type=image_side,
             help='image width in pixels' + size.format(192))
    add_flag(data, '--img_h', default=384 if training else None, type=image_side,
             help='image height in pixels' + size.format(384))
    add_flag(data, '--test-batch', default=64, type=int, help='test batch size (images)')
    add_flag(data, '--workers', default=4, type=int,
             help="data loading processes; 0 loads in the main process (the release's default; more than the "
                  'CPUs this process may use gets a note)')

    model = parser.add_argument_group('model and checkpoints')
    add_flag(model, '--arch', default='resnet50', choices=('resnet50',), help='backbone')
    if training:
        add_flag(model, '--resume', default='', metavar='FILE',
                 help="checkpoint to continue from: a path, or a file name under --model_path; "
                      "<run>_last.t continues exactly; 'auto': the run's _last.t if it exists, else start afresh "
                      '(default: start afresh)')
    else:
        add_flag(model, '--resume', default=None, metavar='FILE',
                 help="checkpoint to evaluate (required unless --onnx): a path, or a file name under --model_path; "
                      "for RegDB '{trial}' in it is replaced by each split's number (1..10)")
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
    add_flag(train, '--lr', default=0.1, type=finite_number(positive=True),
             help='learning rate of the head; the rest gets 0.1x')
    add_flag(train, '--optim', default='sgd', choices=('sgd', 'adam'), help='optimizer')
    add_flag(train, '--batch-size', default=4, type=int, help='identities per training batch')
    add_flag(train, '--num_pos', default=4, type=int, help='images per identity and modality in a batch')
    add_flag(train, '--margin', default=0.3, type=finite_number(), help='triplet loss margin')
    add_flag(train, '--lambda_1', default=0.7, type=finite_number(), help='weight of the TCA loss')
    if training:
        add_flag(train, '--warmup-epochs', default=10, type=int,
                 help="learning-rate warm-up: lr x (epoch + 1) / N over epochs 0..N-1, the release's")
        add_flag(train, '--lr-steps', default=(20, 60, 90), type=parse_epochs, metavar='E1,E2,...',
                 help="epochs from which the learning rate is divided by 10 once more (default: 20,60,90, the "
                      "release's; '' for none)")
        add_flag(train, '--trial', default=1, type=int, help='RegDB split to train on (1..10)')
        add_component_args(parser)
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


def component_defaults():
    """train.py's component switches and their defaults, the release's network and loss: the fields of
    the records model.Architecture and loss.LossSwitches (but --lambda_1, the TCA weight, a release flag)."""
    from loss import LossSwitches
    from model import Architecture
    return {f.name: f.default for record in (Architecture, LossSwitches) for f in dataclasses.fields(record)
            if f.name != 'lambda_1'}


def add_component_args(parser):
    """train.py's component switches for ablations (defaults: the release's network and loss); the
    architecture ones are stored in the checkpoint, from which test.py rebuilds the network. Their
    defaults are the records' (`component_defaults`), filled in after parsing (`fill_component_defaults`),
    so that parsing imports neither model.py nor torch; the help states them, and a test holds the two
    together."""
    group = parser.add_argument_group("components (ablations; default: the release's network and loss)")
    add_flag(group, '--middle', action=argparse.BooleanOptionalAction, default=None,
             help='the middle-modality generator and its two stems; --no-middle: the two-stream baseline '
                  '(visible and thermal stems, shared body, BN neck, as AGW), which needs --lambda_1 0 '
                  '(default: on)')
    add_flag(group, '--mia', default=None, type=parse_mia, metavar='1,2,3|none',
             help='the body layers followed by modality interactive attention (any of 1, 2, 3, or none); '
                  'the cross-layer residual runs between MIAs of consecutive layers (default: 1,2,3)')
    add_flag(group, '--mfa', action=argparse.BooleanOptionalAction, default=None,
             help='multi-scale feature aggregation after layer3 (default: on)')
    add_flag(group, '--triplet-pairs', default=None, choices=('all', 'original'),
             help='stream pairs of the triplet loss: all = (v, t), (v, t_mid), (v_mid, t), (v_mid, t_mid), the '
                  "release's; original = visible-infrared originals (v, t) only (default: all)")
    add_flag(group, '--id-weight', default=None, type=finite_number(),
             help='weight of the identity loss (default: 1.0)')


def fill_component_defaults(parser, args):
    """`args` with every component switch left out set to the records' default, and the switches checked
    by the records (an error names the flag, as argparse does); imports model.py and loss.py."""
    for name, default in component_defaults().items():
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    try:
        args.mia = architecture(args).mia   # distinct body layers, sorted
        loss_switches(args)
    except ValueError as err:   # the records' messages start with the field: 'mia: expected ...'
        parser.error(f'argument --{err}')
    return args


# The largest image side a script accepts: 5x the release's 384 (a 2048x1024 training batch of the
# release's 32 items needs about 60x the release's memory); a larger number is a typo.
MAX_IMAGE_SIDE = 2048


def image_side(text):
    """--img_h/--img_w: whole pixels from 1 to MAX_IMAGE_SIDE."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number of pixels, got {text!r}') from None
    if not 1 <= value <= MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f'expected 1 to {MAX_IMAGE_SIDE} pixels (the release uses 384x192), '
                                         f'got {value}')
    return value


def finite_number(positive=False):
    """An argparse type: a finite float, at least 0 (above 0 when `positive`), such as a weight or a rate."""
    bound = 'above 0' if positive else 'at least 0'

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f'expected a finite number {bound}, got {text!r}')
        return value
    parse.__name__ = 'number'
    return parse


def parse_mia(text):
    """--mia 1,2,3 (any subset of the body layers 1, 2, 3) or none -> a tuple of integers, checked and
    sorted by model.Architecture when `fill_component_defaults` builds it."""
    value = text.strip().lower()
    if value == 'none':
        return ()
    try:
        return tuple(int(i) for i in value.split(','))   # which layers exist: model.Architecture, after parsing
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected body layers among 1, 2, 3, comma-separated, such as 1,2,3 or 2,3, "
                                         f"or 'none'; got {text!r}") from None


def record_of(record, args):
    """`record` (a dataclass) from the attributes of `args` of its fields' names; the record's default for
    those `args` lacks or leaves None (bench.py's flags have no switches; train.py's are None until filled)."""
    value = lambda f: f.default if getattr(args, f.name, None) is None else getattr(args, f.name)
    return record(*(value(f) for f in dataclasses.fields(record)))


def architecture(args):
    """The network train.py's component switches ask for (a model.Architecture)."""
    from model import Architecture
    return record_of(Architecture, args)


def loss_switches(args):
    """The loss train.py's flags ask for (a loss.LossSwitches)."""
    from loss import LossSwitches
    return record_of(LossSwitches, args)


def resolve_data_path(dataset, data_path):
    """--data-path, or the dataset's default root; refuses a path that is not a folder, saying
    whether it was given or the default."""
    path = data_path or DATASETS[dataset].default_path
    if not os.path.isdir(path):
        problem = 'is a file, not a folder' if os.path.exists(path) else 'does not exist'
        if data_path:
            raise ReIDError(f'--data-path {path} {problem}{close_sibling(path)}; expected the {dataset} dataset '
                            'root folder (see the README for its layout)')
        raise ReIDError(f'no --data-path given, and the default {dataset} root {path} {problem}: '
                        'pass --data-path with the dataset root folder')
    return path


def close_sibling(path):
    """' (did you mean X?)' for a folder next to `path` whose name is one slip away, else ''."""
    parent, name = os.path.split(os.path.normpath(path))
    try:
        folders = [f for f in os.listdir(parent or '.') if os.path.isdir(os.path.join(parent, f))]
    except OSError:
        return ''
    close = difflib.get_close_matches(name, folders, n=1, cutoff=0.8)
    return f' (did you mean {os.path.join(parent, close[0])}?)' if close else ''


def check_counts(args, minimums):
    """Refuse a count below its minimum, e.g. {'--batch-size': 1}; the flag is named as --help shows it."""
    for flag, minimum in minimums.items():
        value = getattr(args, flag[2:].replace('-', '_'))
        if value is not None and value < minimum:   # None: not given, a default follows
            raise ReIDError(f'{flag} must be at least {minimum}, got {value}')


def parse_epochs(text):
    """--lr-steps 20,60,90: increasing epoch numbers (none: an empty string)."""
    try:
        epochs = tuple(int(e) for e in text.split(',') if e.strip())
    except ValueError:
        epochs = None
    if epochs is None or any(e < 0 for e in epochs) or list(epochs) != sorted(set(epochs)):
        raise argparse.ArgumentTypeError(f'expected increasing epoch numbers such as 20,60,90, got {text!r}')
    return epochs


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


def parse_size(text):
    """An image size 'HxW' (128x64) -> (h, w)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW, e.g. 128x64, got {text!r}') from None
    return h, w
