"""The training step of IFALNet: the learning-rate schedule, the optimizer, and one epoch.

`lr_at` / `set_lr` (the release's warm-up and steps), `make_optimizer` (the head at the full rate,
the rest at 0.1x, SGD or Adam), `check_optimizer_state` (a resumed optimizer state that fits), and
`train_epoch` (one pass over the loader: forward, the loss, backward, with its progress lines and
the stop of a diverged run). train.py runs the epochs; bench.py times them.
"""
import time

import torch

from ifalnet.devices import autocast, memory_format
from ifalnet.flags import architecture, loss_switches
from ifalnet.interruption import Interrupted
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
    middle, switches = architecture(args).middle, loss_switches(args)   # the release's for bench.py's args
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
            loss, parts = total_loss(feat.float(), logits.float(), label_v, label_t, *criteria, switches.lambda_1,
                                     middle=middle, pairs=switches.triplet_pairs, id_weight=switches.id_weight)
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
