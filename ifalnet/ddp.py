"""Several training processes started by torchrun: the one module that talks to torch.distributed.

As fast-reid's comm.py: the rest of the code asks questions (`world_size()`, `rank()`,
`is_main()`) and calls `barrier()` / `all_gather()`; a run that torchrun did not start is one
process of rank 0, and every call answers for it (a barrier returns at once, a gather returns
`[obj]`). `setup()` picks the device and, under torchrun, joins the process group; `wrap_model()`
puts the model under DistributedDataParallel (and SyncBatchNorm on request).
"""
import contextlib
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ifalnet.devices import select_device
from utils import ReIDError



def launched():
    """True in a process started by torchrun (or `python -m torch.distributed.run`)."""
    return all(k in os.environ for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))


def _initialized():
    return dist.is_available() and dist.is_initialized()


def world_size():
    if _initialized():
        return dist.get_world_size()
    return int(os.environ['WORLD_SIZE']) if launched() else 1


def rank():
    """This process's global rank (also before `setup`, from torchrun's environment)."""
    if _initialized():
        return dist.get_rank()
    return int(os.environ['RANK']) if launched() else 0


def local_rank():
    """This process's index on its node: the GPU it uses."""
    return int(os.environ['LOCAL_RANK']) if launched() else 0


def is_main():
    return rank() == 0


def setup(gpu, backend='auto', timeout_minutes=60, sync_bn=False):
    """This process's device. One process: `device.select_device(gpu)`, as always. Under torchrun:
    GPU LOCAL_RANK of those visible (CUDA_VISIBLE_DEVICES chooses them, not --gpu), or the CPU when
    none is visible or `gpu` is 'cpu' or '';
    then join the process group: `backend` 'auto' is NCCL on CUDA and gloo on the CPU. Every
    check comes first, so a bad flag stops each process with a ReIDError before any waits for the
    others; `sync_bn` is refused on the CPU (PyTorch's SyncBatchNorm runs on GPUs only).

    `timeout_minutes` bounds every collective, so it must cover the longest time one process can
    wait for another: rank 0's validation and checkpoint writing at the end of an epoch."""
    if not launched():
        return select_device(gpu)
    on_cpu = str(gpu).strip().lower() in ('', 'cpu')
    if gpu != '0' and not on_cpu:
        raise ReIDError(f'--gpu {gpu} cannot be used with torchrun: each process uses the GPU of its '
                        f'LOCAL_RANK among the visible ones; choose them with CUDA_VISIBLE_DEVICES '
                        f'(for example CUDA_VISIBLE_DEVICES={gpu} torchrun --nproc_per_node=N train.py ...)')
    if not dist.is_available():
        raise ReIDError('this PyTorch build has no torch.distributed: torchrun cannot be used with it')
    # --gpu cpu (or '') trains on the CPU; otherwise CUDA_VISIBLE_DEVICES stays as the user set it.
    device = select_device('cpu' if on_cpu else None)
    if device.type == 'cuda':
        if local_rank() >= torch.cuda.device_count():
            raise ReIDError(f'process {local_rank()} of this node has no GPU: {torch.cuda.device_count()} '
                            f'visible; start at most that many processes per node (--nproc_per_node)')
        device = torch.device('cuda', local_rank())
        torch.cuda.set_device(device)
    elif sync_bn:
        raise ReIDError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU")
    if backend == 'auto':
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
    if backend == 'nccl' and device.type != 'cuda':
        raise ReIDError('--dist-backend nccl needs CUDA devices and none is visible; use gloo on the CPU')
    if not {'nccl': dist.is_nccl_available, 'gloo': dist.is_gloo_available}[backend]():
        hint = ('try --dist-backend gloo' if backend == 'nccl' and dist.is_gloo_available()
                else 'install a PyTorch build that has it')
        raise ReIDError(f'the {backend} backend of torch.distributed is not available in this PyTorch '
                        f'build; {hint}')
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return device


def cleanup():
    if _initialized():
        dist.destroy_process_group()


def barrier():
    if not _initialized() or world_size() == 1:
        return
    if dist.get_backend() == 'nccl':
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(obj):
    """`obj` of every process (anything picklable), in rank order; `[obj]` for one process."""
    if not _initialized() or world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


@contextlib.contextmanager
def local_main_first():
    """The first process of each node runs the block before the others of that node (one download
    of shared files, such as the ImageNet weights, per node)."""
    if local_rank() != 0:
        barrier()
    yield
    if local_rank() == 0:
        barrier()


def wrap_model(net, device, sync_bn=False):
    """`net` for training: under DistributedDataParallel when there are several processes (its
    gradients averaged over them; rank 0's weights and buffers copied to every process at the start
    and its buffers before every forward), otherwise `net` itself. Keep `net` for checkpoints and
    validation: its state_dict has no 'module.' prefix."""
    if world_size() == 1:
        if sync_bn:
            print('note: --sync-bn has no effect in a single process', flush=True)
        return net
    if sync_bn:
        net = sync_batchnorm(net)
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == 'cuda' else None)


def sync_batchnorm(net):
    """Every BatchNorm layer of `net` replaced, in place, by a SyncBatchNorm holding the same
    parameter and buffer tensors: the optimizer, the frozen bottleneck bias and the state_dict keys
    stay as they are, so checkpoints load into a model without it."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)
