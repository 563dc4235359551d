"""Where and in what precision the network runs: device choice, autocast, memory format.

`select_device` (--gpu), `autocast_dtype` (what --amp means on this device: CUDA bfloat16 or
float16, CPU bfloat16 only where the CPU computes it natively), `cpu_has_native_bf16` (the probe),
`autocast` (the one mixed-precision context of training and testing) and `memory_format`
(--channels-last).
"""
import contextlib
import os

import torch


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
    the CPU computes it natively (measured faster; see docs/speed.md), else --amp is ignored."""
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
