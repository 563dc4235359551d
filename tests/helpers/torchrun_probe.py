"""train.py as torchrun starts it, with a window into each process for tests/test_torchrun.py.

    python -m torch.distributed.run --nproc_per_node=2 tests/helpers/torchrun_probe.py <train.py flags>

Runs `train.main` in every process, as `python train.py` would, with two observations added from
outside the product code (nothing in train.py or ifalnet/ddp.py knows about them):
- IFALNET_DEBUG_DIR=DIR: each process appends the labels of every batch it trains on to
  DIR/labels_rank<R>.jsonl and, when training ends, the digest of its parameters to
  DIR/state_rank<R>.jsonl;
- IFALNET_DEBUG_FAIL=RANK:STEP: that process stops with an error at that training step of each
  epoch (a failure in one process only).
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import train  # noqa: E402  (after the repository root is on the path)
from ifalnet import ddp as distributed  # noqa: E402
from ifalnet.interruption import run_main  # noqa: E402
from utils import ReIDError  # noqa: E402


def parameter_digest(net):
    """SHA-256 of `net`'s parameter names, shapes and values (whatever their memory format)."""
    digest = hashlib.sha256()
    for name, p in net.named_parameters():
        digest.update(f'{name} {tuple(p.shape)}'.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def record(kind, entry):
    directory = os.environ.get('IFALNET_DEBUG_DIR')
    if directory:
        with open(os.path.join(directory, f'{kind}_rank{distributed.rank()}.jsonl'), 'a') as f:
            f.write(json.dumps(entry) + '\n')


class RecordingLoader:
    """The training loader, seen batch by batch: `train_epoch` calls `loader.batch_sampler.set_epoch`,
    `len(loader)` and iterates it, and this forwards all three."""

    def __init__(self, loader):
        self.loader, self.batch_sampler, self.epoch = loader, self, None

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.loader.batch_sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for step, batch in enumerate(self.loader, start=1):
            label_v, label_t = batch[4], batch[5]
            record('labels', {'epoch': self.epoch, 'step': step, 'visible': label_v.tolist(),
                              'thermal': label_t.tolist()})
            if os.environ.get('IFALNET_DEBUG_FAIL') == f'{distributed.rank()}:{step}':
                raise ReIDError(f'IFALNET_DEBUG_FAIL: process {distributed.rank()} stops at step {step}')
            yield batch


def main():
    seen = {}
    make_loader, wrap_model = train.make_train_loader, distributed.wrap_model

    def recording_loader(*args, **kwargs):
        seen['loader'] = RecordingLoader(make_loader(*args, **kwargs))
        return seen['loader']

    def remembering_wrap(net, *args, **kwargs):
        seen['net'] = net
        return wrap_model(net, *args, **kwargs)

    train.make_train_loader, distributed.wrap_model = recording_loader, remembering_wrap
    train.main(sys.argv[1:])
    record('state', {'epoch': seen['loader'].epoch, 'parameters': parameter_digest(seen['net'])})


if __name__ == '__main__':
    run_main(main)
