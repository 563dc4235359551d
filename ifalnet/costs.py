"""The cost of a network (bench.py --parts cost): parameters, FLOPs, latency and peak memory.

- `parameter_counts`: the trained network, the deployed branch (the parameters one test branch
  reaches, found by autograd, frozen ones included) and that branch with the classifier;
- `test_flops`, `training_flops`: FLOPs (multiply-adds count two) per test image (one branch, its
  original and middle streams, as test.py embeds) and per training item (a visible and an infrared
  image, four views, forward and backward), counted by `torch.utils.flop_counter` on fake tensors
  (torch's FakeTensorMode: shapes only, no memory and no arithmetic, any size in a second); it counts
  convolutions and matrix products, nothing elementwise;
- `peak_memory`: the resident memory a process adds to load a deployed branch and embed a batch of
  each size, measured in a child process (on Linux forked, its freed heap returned to the system and
  its peak reset first, so that nothing the measuring process holds counts), with one thread.
"""
import multiprocessing
import resource
import sys

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from ifalnet.deploy import Embedder
from model import Modal, embed_net

CPU_ORDER = (3, 5, 4)   # the release squeeze-excitation's channels on the CPU (model.SEnet)


def build(classes, middle=True):
    """An initialised eval-mode IFALNet (`middle=False`: the two-stream baseline)."""
    return embed_net(classes, middle=middle, se_channels=CPU_ORDER if middle else None).eval()


def parameter_counts(net, img_h=64, img_w=32, modal=Modal.VISIBLE):
    """{'network': every parameter, 'branch': those the `modal` branch uses at test (autograd from its
    features on one image, frozen parameters included), 'branch_with_classifier': plus the classifier}."""
    params = list(net.parameters())
    frozen = [p for p in params if not p.requires_grad]
    for p in params:
        p.grad = None
        p.requires_grad_(True)
    try:
        features, embedding = Embedder(net, modal)(torch.zeros(1, 3, img_h, img_w))
        (features.sum() + embedding.sum()).backward()
        used = sum(p.numel() for p in params if p.grad is not None)
    finally:
        for p in params:
            p.grad = None
        for p in frozen:
            p.requires_grad_(False)
    classifier = net.classifier.weight.numel()
    return {'network': sum(p.numel() for p in params), 'branch': used, 'branch_with_classifier': used + classifier}


def test_flops(classes, middle, img_h, img_w, modal=Modal.VISIBLE):
    """FLOPs of embedding one test image through the `modal` branch (its original and middle streams)."""
    with FakeTensorMode():
        net, image = build(classes, middle), torch.zeros(1, 3, img_h, img_w)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            Embedder(net, modal)(image)
    return counter.get_total_flops()


def training_flops(classes, middle, img_h, img_w):
    """FLOPs of one training item: a visible and an infrared image, their four views through the
    network in train mode (`Modal.BOTH`), then backward from the features and logits."""
    with FakeTensorMode():
        net, views = build(classes, middle).train(), [torch.zeros(1, 3, img_h, img_w) for _ in range(4)]
        with FlopCounterMode(display=False) as counter:
            pool, logits = net(*views, Modal.BOTH)
            (pool.sum() + logits.sum()).backward()
    return counter.get_total_flops()


def memory_status(field):
    """A field of /proc/self/status in MB (VmRSS: resident now, VmHWM: its peak), or None off Linux."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 2 ** 10
    except OSError:
        return None


def reset_peak():
    """Return the freed heap to the system and reset the peak resident memory to the present one
    (Linux: glibc's malloc_trim, /proc/self/clear_refs); False where it cannot be done."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except (OSError, AttributeError):
        return False


def peak_mb():
    """This process's peak resident memory in MB: VmHWM, or ru_maxrss (kilobytes on Linux, bytes on macOS)."""
    hwm = memory_status('VmHWM')
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 2 ** 10


def _memory_child(queue, load, batches, img_h, img_w):
    """In the child: load the branch with `load()` (-> a callable of a float32 numpy batch), embed a
    batch of each size, and report the peak resident memory added since the start after each."""
    try:
        torch.set_num_threads(1)   # a forked child must not use the parent's thread pool
        reset_peak()
        start = memory_status('VmRSS') or peak_mb()
        run = load()
        peaks = []
        for batch in batches:
            run(torch.zeros(batch, 3, img_h, img_w).numpy())
            peaks.append(peak_mb() - start)
        queue.put(peaks)
    except BaseException as err:   # reported to the parent, which raises it
        queue.put(err)


def peak_memory(load, batches, img_h, img_w):
    """[MB] per batch size: the peak resident memory a process adds to run `load()` (a picklable
    callable returning the branch as a callable of numpy batches) and embed each batch in turn (one
    thread). Linux: a forked child, its freed heap returned and its peak reset first; elsewhere a
    spawned one."""
    context = multiprocessing.get_context('fork' if sys.platform.startswith('linux') else 'spawn')
    queue = context.Queue()
    child = context.Process(target=_memory_child, args=(queue, load, list(batches), img_h, img_w))
    child.start()
    result = queue.get()
    child.join()
    if isinstance(result, BaseException):
        raise result
    return result


class TorchBranch:
    """A picklable loader of an initialised branch for `peak_memory`: calling it builds the network
    (`classes`, `middle`) in channels_last, as test.py runs it, and returns a function of numpy batches."""

    def __init__(self, classes, middle, modal=Modal.VISIBLE):
        self.classes, self.middle, self.modal = classes, middle, modal

    def __call__(self):
        embedder = Embedder(build(self.classes, self.middle).to(memory_format=torch.channels_last), self.modal)

        def run(images):
            with torch.inference_mode():
                return embedder(torch.from_numpy(images).contiguous(memory_format=torch.channels_last))
        return run


class ExportedBranch:
    """A picklable loader of an exported file (deploy.Exported) for `peak_memory`."""

    def __init__(self, path):
        self.path = path

    def __call__(self):
        from ifalnet.deploy import Exported
        return Exported(self.path).run
