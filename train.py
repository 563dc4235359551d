"""Train IFALNet on SYSU-MM01, RegDB or LLCM.

    python train.py --dataset sysu --gpu 0
    python train.py --dataset regdb --trial 3 --gpu 0
    python train.py --dataset sysu --resume save_model/sysu_p4_n4_lr_0.1_seed_0_last.t   # exact resume
    torchrun --nproc_per_node=4 train.py --dataset sysu                                # 4 GPUs (docs/training.md)

At start it prints what runs it (ifalnet/environment_stamp.py), whether the training set is the
published one (ifalnet/dataset_census.py) and how many steps an epoch has and why; every checkpoint
records the first two.

This is the command line and the epoch loop (flags, input checks, validation, checkpoints, log);
the schedule, optimizer and one epoch live in recipe.py, a run's files and random states in
ifalnet/run_files.py, the validation in ifalnet/feature_bank.py and ifalnet/scoring.py.
"""
import contextlib
import os
import time

from ifalnet.flags import (DIST_BACKENDS, add_common_args, add_flag, architecture, check_counts, component_defaults,
                           fill_component_defaults, make_parser, resolve_data_path, workers_note)
from ifalnet.interruption import run_main
from utils import ReIDError, plural


def parse_args(argv=None):
    parser = make_parser('Train IFALNet (visible-infrared person re-identification).')
    add_common_args(parser, training=True)
    group = parser.add_argument_group('training (not in the release)')
    add_flag(group, '--epochs', default=121, type=int, help='train epochs 0..EPOCHS-1 (the release: 121)')
    add_flag(group, '--pretrained', default='imagenet', metavar='imagenet|none|FILE',
             help="backbone start: 'imagenet' (torchvision's ResNet-50 weights, from the torch hub cache or "
                  "downloaded), 'none' (from scratch: use a smaller --lr than the release's), or the path of "
                  'that weights file')
    add_flag(group, '--se', default='release', choices=('release', 'working'),
             help="middle-modality squeeze-excitation: 'release' (zero hidden units, fixed channels: the "
                  "release's behaviour) or 'working' (one hidden unit)")
    add_flag(group, '--print-freq', default=50, type=int, help='log every N steps')
    add_flag(group, '--run-name', default=None, metavar='NAME',
             help="the stem of the run's files in --model_path and its log (default: the release's name, "
                  '<dataset>_p<num_pos>_n<batch>_lr_<lr>_seed_<seed>[_<optim>][_val][_trial_<t>])')
    add_flag(group, '--select', default='test', choices=('test', 'val'),
             help="what picks <run>_best.t: 'test' (the release's: Rank-1 on gallery trial 0 of the test set) or "
                  "'val' (Rank-1 on identities held out of training: SYSU-MM01's exp/val_id.txt ids, RegDB and "
                  'LLCM --val-ids of the training identities; the test set is not read; see val_selection.py)')
    add_flag(group, '--val-ids', default=None, type=int, metavar='N',
             help='with --select val on RegDB or LLCM: hold out N training identities, drawn with a fixed seed '
                  '(default: 10%% of them)')
    add_flag(group, '--overwrite', action='store_true',
             help="start afresh even though the run's checkpoints exist: they are removed first (default: "
                  'refuse, saying what is there)')
    group = parser.add_argument_group('several processes (torchrun --nproc_per_node=N train.py ...)')
    add_flag(group, '--sync-bn', action='store_true',
             help='BatchNorm statistics over the batches of all processes (SyncBatchNorm, CUDA only); '
                  'default: per process, over the release batch, as on one GPU')
    add_flag(group, '--dist-backend', default='auto', choices=DIST_BACKENDS,
             help='torch.distributed backend: auto = nccl on CUDA, gloo on the CPU')
    add_flag(group, '--dist-timeout', default=60, type=float, metavar='MINUTES',
             help="how long a process waits for the others (it must cover rank 0's validation and "
                  'checkpoint writing at the end of an epoch)')
    # A mistyped flag stops here; the component switches' defaults come from model.py and loss.py after.
    return fill_component_defaults(parser, parser.parse_args(argv))


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import numpy as np
import torch

from data_loader import TrainBatchSampler, build_train_set, count_train_identities, make_train_loader, source_image_size
from data_manager import check_layout, check_sysu_prepared, dataset_info
from ifalnet import ddp, val_selection
from ifalnet.checkpoints import (checkpoint_architecture, checkpoint_model_args, load_state, read_checkpoint,
                                 refuse_nonfinite, resolve_checkpoint, save_checkpoint, trained_on)
from ifalnet.dataset_census import check_copy, copy_line
from ifalnet.devices import autocast_dtype, memory_format
from ifalnet.environment_stamp import describe as describe_environment, stamp
from ifalnet.feature_bank import embed, embed_problems
from ifalnet.interruption import Interrupted, located, quiet_worker
from ifalnet.output_paths import check_output_dir, tee_stdout
from ifalnet.report_text import format_table, trial_title
from ifalnet.run_files import (check_name_length, check_run_name, claim, gathered_rng, keeps_epoch, refuse_another_run,
                               resolve_resume, restore_rng, resume_hint, run_stem, set_seed)
from ifalnet.scoring import score_trials, summarise_trials
from loss import OriTripletLoss, TcaLoss
from model import embed_net
from recipe import check_optimizer_state, make_optimizer, train_epoch, warmup_warning
from resnet import imagenet_state_dict


def validate(net, data_path, epoch, args, device, amp_dtype=None, selection=None):
    """Rank-1/mAP on gallery trial 0 (RegDB: the trained split) with the release's protocol, or with
    `selection` (--select val, a val_selection.Selection) on the held-out identities."""
    options = dict(img_h=args.img_h, img_w=args.img_w, batch_size=args.test_batch, workers=args.workers,
                   channels_last=args.channels_last, amp_dtype=amp_dtype)
    if selection is None:
        trial = args.trial if dataset_info(args.dataset).split_trials else 0
        problems, bank = embed(net, args.dataset, data_path, [trial], device, mode=args.mode, tvsearch=args.tvsearch,
                               protocol='release', **options)
        title = f'Validation after epoch {epoch}: {trial_title(args.dataset, trial, problems[trial], args.mode)}'
    else:
        problems = {0: selection.problem}
        bank = embed_problems(net, args.dataset, problems, device, **options)
        title = (f'Validation on the held-out identities after epoch {epoch}: '
                 f'{val_selection.title(args.dataset, selection, args.mode)}')
    (trial, raw), = score_trials(problems, bank)
    print(format_table(title, summarise_trials([(trial, raw)])[0]), flush=True)
    return raw['ALL']


def steps_line(trainset, batches, args, world):
    """How many steps an epoch has, and how they follow from the dataset and the batch: the release's
    rule, N // (identities x images) + 1 with N the larger modality's image count (one step more than
    its sampler's length), shared out over the processes of a torchrun."""
    n_visible, n_thermal = len(trainset.train_color_label), len(trainset.train_thermal_label)
    larger = max(n_visible, n_thermal)
    release = larger // (args.batch_size * args.num_pos) + 1
    text = (f'steps per epoch: {release:,} = max({n_visible:,} visible, {n_thermal:,} '
            f'{dataset_info(args.dataset).second_modality} images) // ({args.batch_size} identities x {args.num_pos} '
            "images) + 1 (the release's rule)")
    if world > 1:
        text += f', over {world} processes: ceil({release:,} / {world}) = {len(batches):,} steps each'
    return text


def open_tensorboard(path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None  # tensorboard is optional
    return SummaryWriter(path)


def check_inputs(args):
    """Refuse bad input before anything is written, the log file included: counts, the data root
    and its layout, the RegDB split, the output folders, the run name, the checkpoint to resume (its
    class count, weights and optimizer state), the ImageNet weights file and, with --select val, the
    held-out identities. Returns the checkpoint to resume (or None) and the val_selection.Selection (or None)."""
    check_counts(args, {'--epochs': 1, '--warmup-epochs': 1, '--save_epoch': 1, '--print-freq': 1, '--batch-size': 1, '--num_pos': 1,
                        '--test-batch': 1, '--workers': 0})   # the image size: flags.image_side
    splits = dataset_info(args.dataset).trials
    if dataset_info(args.dataset).split_trials and args.trial not in splits:
        raise ReIDError(f'--trial {args.trial}: {dataset_info(args.dataset).name} splits are '
                        f'{splits.start}..{splits.stop - 1}')
    args.data_path = check_layout(args.dataset, resolve_data_path(args.dataset, args.data_path),
                                  trials=[args.trial], training=True, test=args.select == 'test')
    if args.dataset == 'sysu':
        check_sysu_prepared(args.data_path)
    for flag in ('--model_path', '--log_path', '--vis_log_path'):
        check_output_dir(getattr(args, flag[2:]), flag)
    check_run_name(args.run_name)
    check_name_length(args, run_stem(args))
    selection = check_selection(args)
    n_class = count_train_identities(args.dataset, args.data_path, args.trial,   # reads the labels, not the images
                                     selection.held.labels if selection else ())
    ckpt = check_resume(args, n_class, selection) if args.resume else None
    if args.se_channels and args.se == 'working':
        raise ReIDError('--se-channels applies to the release squeeze-excitation (--se release) only')
    check_components(args)
    if args.pretrained not in ('imagenet', 'none') and not os.path.isfile(args.pretrained):
        raise ReIDError(f"--pretrained {args.pretrained}: no such file; expected 'imagenet', 'none' or the "
                        "path of torchvision's ResNet-50 ImageNet weights")
    if args.pretrained not in ('imagenet', 'none') and not args.resume:
        imagenet_state_dict(args.pretrained)   # read (safely) now: a file that is refused is refused before any work
    return ckpt, selection


def check_selection(args):
    """--select val: the held-out identities and their validation problem (a val_selection.Selection);
    --select test: None."""
    if args.select != 'val':
        if args.val_ids is not None:
            raise ReIDError(f'--val-ids {args.val_ids} applies to --select val only')
        return None
    return val_selection.selection(args.dataset, args.data_path, args.trial, args.val_ids, args.mode, args.batch_size)


def check_components(args):
    """Refuse component switches that do not fit together."""
    if not args.middle and args.lambda_1:
        raise ReIDError(f'--no-middle with --lambda_1 {args.lambda_1}: the TCA loss aligns the centres of the '
                        'four streams, and the network without the middle modality has two (visible, thermal); '
                        'give --lambda_1 0')
    if not args.middle and args.se_channels:
        raise ReIDError('--se-channels chooses middle-modality channels: it does not apply with --no-middle')


def arguments_line(args):
    """The log's arguments line: every argument, except the component switches and the model selection
    left at the release's value (so the release's run prints the line it always did, and an ablation
    shows its switches)."""
    # Left out at these values, so that the release's run prints the line it always did.
    quiet = {**component_defaults(), 'select': 'test', 'val_ids': None}
    shown = {k: v for k, v in vars(args).items() if k not in quiet or v != quiet[k]}
    return 'arguments: ' + ' '.join(f'{k}={v}' for k, v in sorted(shown.items()))


def check_resume(args, n_class, selection=None):
    """The checkpoint of --resume (`auto`: the run's _last.t, if any), read and checked against this
    run: the identities it held out, its classes, finite weights, and an optimizer state that fits --optim."""
    args.resume = resolve_resume(args)
    if not args.resume:
        return None
    args.resume = resolve_checkpoint(args.resume, args.model_path)
    ckpt = read_checkpoint(args.resume)
    model_args = checkpoint_model_args(ckpt, args.resume)
    saved, ours = ckpt.get('held_out'), selection.held.ids if selection else None
    if isinstance(ckpt.get('args'), dict) and saved != ours:   # one of our runs, trained on other identities
        them = f'holding out identities {",".join(map(str, saved))}' if saved else 'on every training identity'
        now = f'holds out {",".join(map(str, ours))}' if ours else 'trains on every training identity (--select test)'
        raise ReIDError(f'{args.resume} was trained {them}, but this run {now}: resume with the --select and '
                        '--val-ids of that run')
    if model_args['class_num'] != n_class:
        raise ReIDError(class_count_mismatch(args, ckpt, model_args['class_num'], n_class))
    saved, asked = checkpoint_architecture(ckpt), architecture(args).as_dict()
    if saved != asked:
        differ = ', '.join(f'{k} {saved[k]} (this run: {asked[k]})' for k in saved if saved[k] != asked[k])
        raise ReIDError(f'{args.resume} holds another network than the component switches ask for: {differ}; '
                        'resume with the switches it was trained with (--middle/--no-middle, --mia, --mfa/--no-mfa)')
    refuse_another_run(ckpt, args, args.resume)
    stored = ckpt.get('se_channels')
    if args.se_channels and stored is not None and tuple(args.se_channels) != tuple(stored):
        raise ReIDError(f'{args.resume} was trained with middle-modality channels {",".join(map(str, stored))}, '
                        f'not --se-channels {",".join(map(str, args.se_channels))}: leave the flag out to resume')
    refuse_nonfinite(ckpt['net'], args.resume)
    check_optimizer_state(ckpt, args, args.resume)
    return ckpt


def class_count_mismatch(args, ckpt, saved, n_class):
    """Why a checkpoint's classifier does not fit this run's training set, naming the datasets."""
    here = dataset_info(args.dataset).name + (f' split {args.trial}' if dataset_info(args.dataset).split_trials else '')
    held = ' less its held-out identities (--select val)' if args.select == 'val' else ''
    info = trained_on(ckpt)
    if info['dataset'] and info['dataset'] != args.dataset:
        return (f'{args.resume} was trained on {dataset_info(info["dataset"]).name} ({saved} classes), but this run '
                f'trains on {here}{held} ({n_class} classes): resume a checkpoint of {dataset_info(args.dataset).name}, '
                'or leave out --resume to start afresh')
    made = f'a {dataset_info(info["dataset"]).name} model, ' if info['dataset'] else ''
    return (f'{args.resume} has {saved} classes ({made}its classifier), but the {here} training set at '
            f'{args.data_path}{held} has {n_class}: resume a checkpoint trained on these identities, or leave out '
            '--resume to start afresh')


SMALL_VALIDATION = 10   # fewer queries or gallery identities than this cannot tell epochs apart


def start_warnings(args, selection=None, source_size=None):
    """The traps of a run that starts without a word otherwise, one line each (nothing stops): images
    upsampled far beyond their size (`source_size`: the training images' median (h, w)), the release's SGD
    learning rate without its ImageNet start, and a held-out validation too small to choose an epoch."""
    lines = []
    if source_size and args.img_h * args.img_w >= 4 * source_size[0] * source_size[1]:
        h, w = source_size
        lines.append(f'warning: the training images are about {h}x{w} (the median of a sample) and --img_h '
                     f'{args.img_h} --img_w {args.img_w} upsamples them {args.img_h * args.img_w / (h * w):.0f}x in '
                     f'pixels: as much more compute, no more detail; give --img_h {h} --img_w {w} (or near it)')
    if args.pretrained == 'none' and args.optim == 'sgd' and args.lr >= 0.05:
        lines.append(f'warning: --pretrained none with SGD --lr {args.lr:g}: the release\'s rate is meant for an ImageNet '
                     'start, and from scratch it can make every image\'s features the same (a collapse test.py '
                     'reports); use a smaller --lr, or --optim adam --lr 0.02 as demo.py does')
    if selection is not None:
        queries, gallery = selection.problem.query, selection.problem.gallery
        ids = len(set(int(i) for i in gallery.ids))
        n_queries = f'{len(queries.paths)} quer{"y" if len(queries.paths) == 1 else "ies"}'
        n_ids = f'{ids} gallery identit{"y" if ids == 1 else "ies"}'
        if ids < 2:
            lines.append(f'warning: --select val validates on {n_queries} against '
                         f'{plural(len(gallery.paths), "gallery image")} of one identity: Rank-1 is 100% by '
                         'construction, so _best.t is the first validated epoch; hold out more identities '
                         '(--val-ids) or select on the test set (--select test)')
        elif len(queries.paths) < SMALL_VALIDATION or ids < SMALL_VALIDATION:
            lines.append(f'warning: --select val validates on {n_queries} against {n_ids}: too few for its Rank-1 '
                         'to tell epochs apart reliably; hold out more identities (--val-ids)')
    return lines


def main(argv=None):
    args = parse_args(argv)
    ckpt, selection = check_inputs(args)
    name = run_stem(args)
    log_file = os.path.join(args.log_path, f'{args.dataset}_log', f'{name}_os.txt')
    # Under torchrun only rank 0 claims the run's files, prints and writes the log (errors still
    # reach stderr).
    with claim(args, name) if ddp.is_main() else contextlib.nullcontext() as held:
        with tee_stdout(log_file) if ddp.is_main() else silenced_stdout():
            try:
                train(args, ckpt, selection, saved=held.saved if held else None)
            except Interrupted as err:
                err.hint = resume_hint(args.model_path, name, replacing=bool(held and held.pending))
                raise
            finally:
                ddp.cleanup()


@contextlib.contextmanager
def silenced_stdout():
    with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null):
        yield


def train(args, ckpt=None, selection=None, saved=None):
    """Train; `ckpt` is the checkpoint of --resume and `selection` the held-out identities of
    --select val, both read and checked by `check_inputs`; `saved()`, when given, is called after each
    save of the run's _last.t."""
    name = run_stem(args)
    print(arguments_line(args), flush=True)
    device = ddp.setup(args.gpu, args.dist_backend, args.dist_timeout, args.sync_bn)
    world, rank = ddp.world_size(), ddp.rank()
    environment = stamp(device, world)   # stored in every checkpoint; printed so two machines can be compared
    print(f'environment: {describe_environment(environment)}', flush=True)
    amp_dtype = autocast_dtype(args.amp, device)
    if warmup_warning(args):
        print(warmup_warning(args), flush=True)
    set_seed(args.seed + rank)  # dropout differs between processes; the weights are rank 0's (DDP copies them)
    data_path = args.data_path   # resolved and checked by check_inputs

    if selection is None and args.select == 'val':
        selection = check_selection(args)
    if selection is not None:
        print(val_selection.describe(args.dataset, selection.held, selection.problem), flush=True)
    for line in start_warnings(args, selection, source_image_size(args.dataset, data_path, args.trial)):
        print(line, flush=True)
    if note := workers_note(args.workers):
        print(note, flush=True)
    start = time.time()
    trainset = build_train_set(args.dataset, data_path, args.img_h, args.img_w, args.trial,
                               selection.held.labels if selection else ())
    n_class = len(np.unique(trainset.train_color_label))
    print(f'{args.dataset}: {n_class} training identities, {len(trainset.train_color_label)} visible and '
          f'{len(trainset.train_thermal_label)} {dataset_info(args.dataset).second_modality} images, loaded in '
          f'{time.time() - start:.1f}s', flush=True)
    copy = check_copy(args.dataset, data_path, 'train', [args.trial], prepared=dataset_info(args.dataset).prepared_arrays)
    print(copy_line(copy), flush=True)   # the copy against the published training set
    # One process: identities from numpy's global generator (the release's stream). Several: every
    # process draws the same sequence from seed + epoch and takes its own block of each step.
    batches = TrainBatchSampler(trainset.train_color_label, trainset.train_thermal_label, args.num_pos,
                                args.batch_size, seed=args.seed, rank=rank, world_size=world, shared_seed=world > 1)
    print(steps_line(trainset, batches, args, world), flush=True)
    if world > 1:
        print(f'{world} processes, each {args.batch_size} identities x {args.num_pos} images per modality: '
              f'a global batch of {world * args.batch_size} identities, {plural(len(batches), "step")} per epoch '
              f'(--lr {args.lr} is used as given, not scaled)', flush=True)

    start_epoch, best = 0, {'rank1': -1.0, 'epoch': -1}
    if args.resume and ckpt is None:
        ckpt = check_resume(args, n_class, selection)
    pretrained = 'none' if ckpt is not None else args.pretrained   # a checkpoint replaces every weight
    with ddp.local_main_first():   # one ImageNet download per node
        net = embed_net(n_class, arch=args.arch, pretrained=pretrained, working_se=args.se == 'working',
                        **architecture(args).as_dict())
    net = net.to(device, memory_format=memory_format(args.channels_last))
    optimizer = make_optimizer(net, args)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    se_channels = args.se_channels
    if ckpt is not None:
        load_state(net, ckpt['net'], args.resume)
        se_channels = se_channels or ckpt.get('se_channels')
        start_epoch = int(ckpt.get('epoch', -1)) + 1
        if 'optimizer' in ckpt:
            optimizer.load_state_dict(ckpt['optimizer'])
            if ckpt.get('scaler'):
                scaler.load_state_dict(ckpt['scaler'])
            best = ckpt.get('best', best)
            restore_rng(ckpt, args.resume)
        else:
            print(f'warning: {args.resume} holds weights and scores but no optimizer, scaler or random state '
                  '(only a run\'s _last.t does; its _best.t and _epoch_N.t, like the release\'s checkpoints, do '
                  f'not): training continues at epoch {start_epoch} with zero momentum and fresh random draws, so '
                  'it will not equal an uninterrupted run; resume from the run\'s _last.t to continue exactly',
                  flush=True)
            if ckpt.get('cmc') is not None:
                # Without the run's best score, count this checkpoint's as the best so far, so
                # that a worse epoch does not replace the run's _best.t.
                best = {'rank1': float(ckpt['cmc'][0]), 'mAP': float(ckpt['mAP']), 'epoch': start_epoch - 1}
        print(f'resuming at epoch {start_epoch} of {args.epochs}', flush=True)
        if start_epoch >= args.epochs:
            print(f'nothing is left to train: {args.resume} holds epoch {start_epoch - 1}, the last of --epochs '
                  f'{args.epochs} (epochs 0..{args.epochs - 1}); give a larger --epochs to train further', flush=True)
            return
    if args.se == 'release' and args.middle:
        # Fixed once and stored in every checkpoint, so testing on another device uses the same channels.
        se_channels = net.SEnet.set_channels(se_channels)
        print(f'middle-modality channels (release squeeze-excitation): {",".join(map(str, se_channels))}')
    loader = make_train_loader(trainset, batches, args.workers, device, worker_init_fn=quiet_worker)
    trained = ddp.wrap_model(net, device, args.sync_bn)   # `net` itself for one process

    os.makedirs(args.model_path, exist_ok=True)
    writer = open_tensorboard(os.path.join(args.vis_log_path, name)) if ddp.is_main() else None
    criteria = (OriTripletLoss(args.batch_size * args.num_pos, args.margin), TcaLoss())
    for epoch in range(start_epoch, args.epochs):
        with located(f'epoch {epoch}, after its last step'):   # where a signal stopped it
            epoch_start = time.time()
            stats = train_epoch(trained, loader, optimizer, scaler, criteria, epoch, args, device, amp_dtype)
            print(f'epoch {epoch} done in {time.time() - epoch_start:.1f}s', flush=True)
            refuse_nonfinite(net.state_dict(), f'training diverged: after epoch {epoch}',
                             '; nothing of this epoch is saved (the last _last.t, if any, is the last good state); '
                             'lower --lr')
            validated = epoch > 0 and ddp.is_main()
            cmc, mAP, mINP = (validate(net, data_path, epoch, args, device, amp_dtype, selection) if validated
                              else (None, None, None))
            rng = gathered_rng()   # the other processes wait here while rank 0 validates
            if not ddp.is_main():
                continue   # rank 0 alone saves and logs; the others meet it again in the next step

            # _best.t and _epoch_N.t hold the model and its scores, as the release's checkpoints do;
            # only _last.t, the resume point, adds what an exact continuation needs.
            ckpt = {'net': net.state_dict(), 'epoch': epoch, 'cmc': cmc, 'mAP': mAP, 'mINP': mINP,
                    'se_channels': net.se_channels, 'architecture': net.architecture(), 'args': vars(args),
                    'environment': environment, 'dataset_copy': copy,
                    **({'held_out': selection.held.ids} if selection else {})}
            if cmc is not None and cmc[0] > best['rank1']:
                best = {'rank1': float(cmc[0]), 'mAP': float(mAP), 'epoch': epoch}
                save_checkpoint(ckpt, os.path.join(args.model_path, f'{name}_best.t'))
                print(f'new best Rank-1 {100 * best["rank1"]:.2f}% at epoch {epoch}', flush=True)
            if keeps_epoch(epoch, args.save_epoch):
                save_checkpoint(ckpt, os.path.join(args.model_path, f'{name}_epoch_{epoch}.t'))
            save_checkpoint({**ckpt, 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(), 'best': best,
                             **rng}, os.path.join(args.model_path, f'{name}_last.t'))
            if saved is not None:
                saved()

            if writer is not None:
                for key, value in stats.items():
                    writer.add_scalar(f'train/{key}', value, epoch)
                if cmc is not None:
                    writer.add_scalar('val/rank1', cmc[0], epoch)
                    writer.add_scalar('val/mAP', mAP, epoch)
    ddp.barrier()   # every process ends after rank 0 has written its last checkpoint
    if best['epoch'] >= 0:
        print(f'best Rank-1 {100 * best["rank1"]:.2f}% (mAP {100 * best["mAP"]:.2f}%) at epoch {best["epoch"]}')
    if writer is not None:
        writer.close()


if __name__ == '__main__':
    run_main(main)
