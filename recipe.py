"""The training engine of train.py (and bench.py): schedule, optimizer, one epoch, run names,
random states.

`lr_at` / `set_lr` (the release's warm-up and steps), `make_optimizer` (the head at the full rate,
the rest at 0.1x), `train_epoch` (one pass over the loader with its progress lines), `run_name`
(the file stem of a run's checkpoints and log; it names the component switches that differ from the
release's), `keeps_epoch` (which epochs are also kept), and
the random states an exact resume restores (`gathered_rng`, `restore_rng`, `set_seed`).
"""
import random
import time

import numpy as np
import torch

import distributed
from device import autocast, memory_format
from interrupt import Interrupted
from flags import COMPONENT_DEFAULTS
from loss import stream_labels, total_loss
from model import Modal
from utils import ReIDError


def lr_at(epoch, lr, warmup=10, steps=(20, 60, 90)):
    """The release's schedule by default: a linear warm-up over `warmup` epochs, then lr divided by
    10 at every epoch of `steps` reached (0.1 lr from 20, 0.01 lr from 60, 0.001 lr from 90)."""
    if epoch < warmup:
        return lr * (epoch + 1) / warmup
    # 1e-n parsed, not 0.1 ** n: the very factors 0.1, 0.01, 0.001 of the release (0.1 ** 3 is not 0.001).
    return lr * float(f'1e-{sum(epoch >= step for step in steps)}')


def warmup_warning(args):
    """The warning for a run whose last epoch is inside the warm-up (the rate never reaches --lr),
    or None."""
    if args.epochs >= args.warmup_epochs:
        return None
    rates = ', '.join(f'{lr_at(e, args.lr, args.warmup_epochs):g}' for e in range(args.epochs))
    return (f'warning: --epochs {args.epochs} ends inside the {args.warmup_epochs}-epoch warm-up (lr x (epoch + 1) / '
            f'{args.warmup_epochs}, the release\'s): the head trains at {rates} (the rest at 0.1x) and never '
            f'reaches --lr {args.lr:g}; train {args.warmup_epochs} epochs or more, or shorten --warmup-epochs')


def make_optimizer(net, args):
    """Head (bottleneck, classifier) at the full rate, everything else at 0.1x, as the release."""
    bottleneck, classifier = list(net.bottleneck.parameters()), list(net.classifier.parameters())
    head_ids = {id(p) for p in bottleneck + classifier}
    groups = [{'params': [p for p in net.parameters() if id(p) not in head_ids], 'lr': 0.1 * args.lr},
              {'params': bottleneck, 'lr': args.lr},
              {'params': classifier, 'lr': args.lr}]
    if args.optim == 'sgd':
        return torch.optim.SGD(groups, lr=args.lr, weight_decay=5e-4, momentum=0.9, nesterov=True)
    return torch.optim.Adam(groups, lr=args.lr, weight_decay=5e-4)


def check_optimizer_state(ckpt, args, source):
    """Refuse, before training, a checkpoint whose optimizer state does not fit `args`' optimizer
    (another --optim: SGD keeps one momentum buffer per weight, Adam two moments, and their settings
    differ)."""
    groups = ckpt['optimizer'].get('param_groups', []) if isinstance(ckpt.get('optimizer'), dict) else []
    if not groups:
        return
    saved = 'adam' if 'betas' in groups[0] else 'sgd'
    if saved != args.optim or len(groups) != 3:
        layout = f'{len(groups)} parameter groups' if len(groups) != 3 else f'--optim {saved}'
        raise ReIDError(f'{source} holds the optimizer state of {layout}, which does not fit --optim {args.optim}: '
                        f'resume with --optim {saved}' + (', or start a new run (--run-name NAME)' if
                                                          len(groups) == 3 else ''))


def set_lr(optimizer, epoch, args):
    lr = lr_at(epoch, args.lr, args.warmup_epochs, args.lr_steps)
    for i, group in enumerate(optimizer.param_groups):
        group['lr'] = 0.1 * lr if i == 0 else lr
    return lr


def keeps_epoch(epoch, save_epoch):
    """Whether epoch `epoch` is also saved as <run>_epoch_<epoch>.t: the release's rule, every
    --save_epoch epochs after the warm-up (epochs 20, 40, ..., 120 by default)."""
    return epoch > 10 and epoch % save_epoch == 0


LAMBDA_1 = 0.7   # the release's TCA weight (flags.add_common_args' default)


def component(args, name):
    """A component switch of `args` (the release's value when `args` has none, as bench.py's)."""
    return getattr(args, name, COMPONENT_DEFAULTS[name])


def components_suffix(args):
    """The part of the run name that says which component switches (and --lambda_1) differ from the
    release's: '_nomiddle_mia_1_3_nomfa_pairs_original_id_0.5_lambda_0'; '' for the release's."""
    parts = []
    if not component(args, 'middle'):
        parts.append('nomiddle')
    if tuple(component(args, 'mia')) != COMPONENT_DEFAULTS['mia']:
        parts.append('mia_' + ('_'.join(map(str, component(args, 'mia'))) or 'none'))
    if not component(args, 'mfa'):
        parts.append('nomfa')
    if component(args, 'triplet_pairs') != COMPONENT_DEFAULTS['triplet_pairs']:
        parts.append(f'pairs_{component(args, "triplet_pairs")}')
    if component(args, 'id_weight') != COMPONENT_DEFAULTS['id_weight']:
        parts.append(f'id_{component(args, "id_weight")}')
    if getattr(args, 'lambda_1', LAMBDA_1) != LAMBDA_1:
        parts.append(f'lambda_{args.lambda_1}')
    return ''.join(f'_{p}' for p in parts)


def run_name(args):
    name = f'{args.dataset}_p{args.num_pos}_n{args.batch_size}_lr_{args.lr}_seed_{args.seed}'
    if args.optim != 'sgd':
        name += f'_{args.optim}'
    name += components_suffix(args)
    if getattr(args, 'select', 'test') == 'val':   # selected on held-out identities (train.py --select val)
        name += '_val'
    if args.dataset == 'regdb':
        name += f'_trial_{args.trial}'
    return name


def rng_state():
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {'python': random.getstate(), 'torch': torch.get_rng_state(),
             'numpy': (torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    torch.set_rng_state(state['torch'])
    keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(('MT19937', keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gathered_rng():
    """The random states of every process, for the checkpoint: 'rng' is rank 0's (the one-process
    format), 'rng_ranks' all of them in rank order when there are several. Every process calls it."""
    states = distributed.all_gather(rng_state())
    return {'rng': states[0], 'world_size': len(states), **({'rng_ranks': states} if len(states) > 1 else {})}


def restore_rng(ckpt, source):
    """This process's random states from a checkpoint written by as many processes as this run has."""
    saved, world = int(ckpt.get('world_size', 1)), distributed.world_size()
    if saved == world:
        set_rng_state(ckpt['rng_ranks'][distributed.rank()] if world > 1 else ckpt['rng'])
    else:
        print(f'note: {source} was written by {saved} process(es) and this run has {world}: the identity '
              f'draws follow the {world}-process sequence and the other random streams restart from '
              f'--seed, so the run will not equal an uninterrupted one', flush=True)


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def diverged(epoch, step, steps, lr, loss, parts):
    """The error that stops a run whose loss is no longer finite, before the weights it broke are saved."""
    detail = ' '.join(f'{k} {float(parts[k]):.4g}' for k in ('id', 'tri', 'tca'))
    return ReIDError(f'training diverged: the loss is {float(loss.detach())} ({detail}) at epoch {epoch} step {step}/{steps}, '
                     f'learning rate {lr:.5g}; nothing of this epoch is saved (the last _last.t, if any, is the '
                     'last good state); lower --lr')


PROGRESS_SECONDS = 30   # a progress line at least this often, whatever --print-freq says


def train_epoch(net, loader, optimizer, scaler, criteria, epoch, args, device, amp_dtype=None):
    """One epoch; returns the mean of each loss part, the identity accuracy, the learning rate and
    the seconds spent waiting for data and computing. Prints the first step, every --print-freq
    steps or PROGRESS_SECONDS (whichever comes first) and the last step. A loss that is not finite
    stops it (ReIDError); a signal's `Interrupted` leaves with the epoch and step in it."""
    lr = set_lr(optimizer, epoch, args)
    loader.batch_sampler.set_epoch(epoch)
    fmt = memory_format(args.channels_last)
    middle = component(args, 'middle')
    net.train()
    sums, correct, total = {'loss': 0.0, 'id': 0.0, 'tri': 0.0, 'tca': 0.0}, 0, 0
    steps, waited, computed = len(loader), 0.0, 0.0
    start = last_print = tick = time.perf_counter()
    current = 1   # the step in progress (its batch being made, or computed), for an interruption's line
    try:
        for step, (v1, v2, t1, t2, label_v, label_t) in enumerate(loader, start=1):
            data_ready = time.perf_counter()
            waited += data_ready - tick
            v1, v2, t1, t2 = (x.to(device, non_blocking=True, memory_format=fmt) for x in (v1, v2, t1, t2))
            label_v, label_t = label_v.to(device, non_blocking=True), label_t.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                feat, logits = net(v1, v2, t1, t2, Modal.BOTH)
            # The losses run in float32 whatever the network's precision.
            loss, parts = total_loss(feat.float(), logits.float(), label_v, label_t, *criteria, args.lambda_1,
                                     middle=middle, pairs=component(args, 'triplet_pairs'),
                                     id_weight=component(args, 'id_weight'))
            if not torch.isfinite(loss):
                raise diverged(epoch, step, steps, lr, loss, parts)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

            labels = stream_labels(label_v, label_t, middle)
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.numel()
            sums['loss'] += loss.item()
            for key in ('id', 'tri', 'tca'):
                sums[key] += parts[key]
            tick = time.perf_counter()
            computed += tick - data_ready
            current = step + 1
            if step == 1 or step % args.print_freq == 0 or step == steps or tick - last_print >= PROGRESS_SECONDS:
                last_print = tick
                print(f'Epoch: [{epoch}][{step}/{steps}] time {tick - start:.1f}s (data wait {waited:.1f}s, '
                      f'compute {computed:.1f}s) lr {lr:.5f} loss {sums["loss"] / step:.4f} '
                      f'(id {sums["id"] / step:.4f} tri {sums["tri"] / step:.4f} tca {sums["tca"] / step:.4f}) '
                      f'accu {100 * correct / total:.2f}%', flush=True)
    except Interrupted as err:
        err.where = f'epoch {epoch} step {min(current, steps)}/{steps}'
        raise
    return {**{k: v / steps for k, v in sums.items()}, 'accuracy': correct / total, 'lr': lr,
            'data_wait': waited, 'compute': computed}
