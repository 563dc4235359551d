"""How fast IFALNet trains and tests on this device, and where the time goes.

    python3 bench.py                                        # 64x32 images: a CPU-sized run
    python3 bench.py --img_h 384 --img_w 192 --json bench.json   # the real size, on a GPU

- Training: a short real training loop (recipe.py's `train_epoch`, the release batch of 4 identities
  x 4 images per modality, synthetic identities held in memory), time per step split into waiting
  for data and compute, for float32 contiguous, float32 channels_last, and mixed precision (on CUDA
  what `--amp` uses; on the CPU bfloat16 autocast, which `--amp` uses only where the CPU has native
  bfloat16 instructions).
- Embedding: ifalnet/feature_bank.py's FeatureBank (what test.py embeds with) on JPEG files of twice the test
  size (decode, LANCZOS resize, network), images per second, for the same variants, and for the same
  weights exported by export.py and run by onnxruntime on the CPU (when requirements-export.txt is
  installed).
- Input pipeline: training items per second (four views each), in one process and with
  `--workers`, for our views and for torchvision's PIL transforms (the release's), at
  `--pipeline-size`.
- Metrics: one call of eval_sysu / eval_llcm at the real test-set sizes.
- Memory: peak resident memory of the process; on CUDA the peak allocated per variant.

Variants run in turn, `--repeats` times, and the best time of each is kept, so that passing load on
a shared machine inflates all of them alike. Prints a table; `--json FILE` writes the figures.

Three parts run only when asked for (`--parts loop`, `--parts rerank`, which were bench_metrics.py, and
`--parts cost`):
- loop: the vectorised metrics (eval_metrics.py) against a straightforward per-query loop
  (ifalnet/slow_metrics.py, which pays the release's argsort of the whole matrix) at SYSU-MM01 and
  LLCM test-set sizes, with the default threads and one thread, and whether the numbers agree;
- rerank: k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3) against the per-image version of
  slow_metrics.py at the SYSU-MM01 size (the loop once: it takes tens of seconds), and alone at the
  LLCM size, with the peak memory it allocates;
- cost: for IFALNet and the two-stream baseline (--no-middle), at `--cost-size` (384x192): parameters
  (trained network, deployed branch, branch with the classifier), FLOPs per test image and per
  training item (torch.utils.flop_counter), latency at batch 1 and images per second at batch 1 and
  `--cost-batch`, and peak memory, for PyTorch on the CPU, ONNX Runtime on the CPU (with
  requirements-export.txt) and PyTorch on CUDA (on a GPU); ifalnet/costs.py measures.
A disagreement of loop or rerank with its slow version ends the script with status 1.
"""
import contextlib
import functools
import importlib.util
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time

from ifalnet.flags import add_common_args, add_flag, image_side, make_parser, parse_size
from ifalnet.interruption import Interrupted, quiet_worker, run_main

PARTS = ('train', 'embed', 'pipeline', 'metrics', 'loop', 'rerank', 'cost')


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    add_flag(parser, '--img_h', type=image_side, default=64, help='training and test image height')
    add_flag(parser, '--img_w', type=image_side, default=32, help='training and test image width')
    add_flag(parser, '--steps', type=int, default=5, help='measured training steps per variant (at least 2)')
    add_flag(parser, '--embed-images', type=int, default=256, help='test images embedded per variant')
    add_flag(parser, '--test-batch', type=int, default=64, help='test batch size (images)')
    add_flag(parser, '--workers', type=int, default=2, help='loader processes (training, embedding, pipeline)')
    add_flag(parser, '--pipeline-size', type=parse_size, default='384x192', metavar='HxW',
             help='image size of the input-pipeline measurement')
    add_flag(parser, '--repeats', type=int, default=2, help='rounds of every variant; the best is kept')
    add_flag(parser, '--parts', default='train,embed,pipeline,metrics',
             help='comma-separated parts to run: train, embed, pipeline, metrics, and, only when asked for, loop '
                  '(the metrics against a per-query loop), rerank (re-ranking against a per-image version) and cost '
                  '(parameters, FLOPs, latency and memory of IFALNet and the two-stream baseline)')
    add_flag(parser, '--cost-size', type=parse_size, default='384x192', metavar='HxW',
             help='image size of the cost part')
    add_flag(parser, '--cost-batch', type=int, default=32, help='the large batch of the cost part (images)')
    add_flag(parser, '--gpu', default='0', help="CUDA device (CUDA_VISIBLE_DEVICES); 'cpu' or '' for the CPU")
    add_flag(parser, '--all-variants', action='store_true',
             help='also measure variants this device cannot run natively (the CPU bfloat16 variant without '
                  'native bfloat16; by default skipped and listed as skipped)')
    add_flag(parser, '--json', default=None, metavar='FILE', help='also write the figures here as JSON')
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(',') if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f'--parts: unknown part(s) {", ".join(sorted(unknown))}; expected {", ".join(PARTS)}')
    if min(args.steps, args.embed_images, args.repeats, args.img_h, args.img_w, args.cost_batch) < 1 or args.workers < 0:
        parser.error('--steps, --embed-images, --repeats, --cost-batch and the image size must be positive, '
                     '--workers >= 0')
    return args


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

import data_loader as dl
import eval_metrics
from ifalnet import costs, slow_metrics
from ifalnet.atomic import atomic_write
from ifalnet.deploy import Embedder, Exported, ExportedNet, export, runtime_available
from ifalnet.devices import cpu_has_native_bf16, memory_format, select_device
from ifalnet.environment_stamp import stamp
from ifalnet.feature_bank import FeatureBank
from ifalnet.output_paths import check_output_file
from ifalnet.rerank import euclidean, re_ranking
from ifalnet.timing import TEST_SET_SHAPES, best_of, peak_mb, ranking_case, timed
from ifalnet.toy_datasets import render_identity
from loss import OriTripletLoss, TcaLoss
from model import Modal, embed_net
from recipe import make_optimizer, train_epoch


def variants(device, all_variants=False):
    """(name, channels_last, autocast dtype) of each variant to measure, and the names of those
    skipped: on a CPU without native bfloat16 the bfloat16 variant is emulated (many times slower)
    and `--amp` does not use it, so it runs only with `--all-variants`."""
    if device.type == 'cuda':
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        amp_name = f'AMP {str(amp).replace("torch.", "")} channels_last'
    elif cpu_has_native_bf16():
        amp, amp_name = torch.bfloat16, 'CPU bfloat16 channels_last (--amp)'
    else:
        amp, amp_name = torch.bfloat16, 'CPU bfloat16 channels_last (emulated)'
    chosen = [('fp32 contiguous', False, None), ('fp32 channels_last', True, None), (amp_name, True, amp)]
    if device.type == 'cpu' and not cpu_has_native_bf16() and not all_variants:
        return chosen[:2], [amp_name]
    return chosen, []


SKIPPED_NOTE = ('skipped: {} (this CPU has no native bfloat16: emulated, many times slower, and --amp does not use '
                'it here; --all-variants runs it)')


def rendered(n_ids, per_id, size, seed=0):
    """Synthetic visible and infrared images (uint8 (n, h, w, 3)) of identities 0..n_ids-1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), per_id)
    images = {m: np.stack([np.asarray(render_identity(int(pid) % 64 + 1, m, rng, size)) for pid in labels])
              for m in ('visible', 'infrared')}
    return images['visible'], images['infrared'], labels


def cuda_peak(device):
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == 'cuda' else None


def reset_cuda_peak(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def bench_training(args, device, best=None):
    """Per-step seconds (data wait, compute) of train_epoch, one warm-up epoch then one measured; `best`
    (a dict) receives each variant's best as it comes."""
    batch_items = 4 * 4
    # N = 16 (steps - 1) images per modality: the sampler's N // 16 + 1 batches are `steps` steps.
    color, thermal, labels = rendered(4 * max(args.steps - 1, 1), 4, (args.img_h, args.img_w))
    trainset = dl.TrainData(color, labels, thermal, labels, args.img_h, args.img_w)
    # train.py's defaults for everything train_epoch reads (learning rate, loss weights, ...)
    options = add_common_args(make_parser(''), training=True).parse_args(
        ['--img_h', str(args.img_h), '--img_w', str(args.img_w)])
    options.print_freq = 10 ** 6
    table = {name: (last, amp) for name, last, amp in variants(device, args.all_variants)[0]}
    best = {} if best is None else best

    def measure(name):
        channels_last, amp = table[name]
        options.channels_last = channels_last
        torch.manual_seed(0)
        np.random.seed(0)
        net = embed_net(len(np.unique(labels))).to(device, memory_format=memory_format(channels_last))
        optimizer = make_optimizer(net, options)
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        criteria = (OriTripletLoss(batch_items, options.margin), TcaLoss())
        batches = dl.TrainBatchSampler(labels, labels, 4, 4, seed=0)
        loader = dl.make_train_loader(trainset, batches, args.workers, device, worker_init_fn=quiet_worker)
        with contextlib.redirect_stdout(io.StringIO()):
            train_epoch(net, loader, optimizer, scaler, criteria, 0, options, device, amp)   # warm-up
            reset_cuda_peak(device)
            stats = train_epoch(net, loader, optimizer, scaler, criteria, 1, options, device, amp)
        steps = len(loader)
        step = (stats['data_wait'] + stats['compute']) / steps
        return step, {'data_wait_s': stats['data_wait'] / steps, 'compute_s': stats['compute'] / steps,
                      'cuda_max_allocated_mb': cuda_peak(device)}

    return training_rows(best_of(args.repeats, list(table), measure, 'training', best,
                                 lambda s, extra: f'{s:.3f} s a step'))


def ratios(best, base='fp32 contiguous'):
    """Each variant's time over the base variant's (None until the base is measured)."""
    base = best.get(base, (None,))[0]
    return {name: s / base if base else None for name, (s, _) in best.items()}


def training_rows(best):
    return {name: {'step_s': s, **extra, 'ratio': ratios(best)[name]} for name, (s, extra) in best.items()}


def bench_embedding(args, device, folder, best=None):
    """Images per second of FeatureBank.add (decode, resize, network) on JPEGs of twice the size; `best`
    as for bench_training."""
    visible, _, _ = rendered(args.embed_images, 1, (2 * args.img_h, 2 * args.img_w))
    paths = []
    for i, img in enumerate(visible):
        paths.append(os.path.join(folder, f'{i:05d}.jpg'))
        Image.fromarray(img).save(paths[-1], quality=95)
    table = {name: (last, amp) for name, last, amp in variants(device, args.all_variants)[0]}
    best = {} if best is None else best
    torch.manual_seed(0)
    weights = embed_net(395).state_dict()
    exported = exported_net(weights, args, folder)

    def measure(name):
        channels_last, amp = table.get(name, (False, None))
        net = exported.get(name) or embed_net(395)
        if name not in exported:
            net.load_state_dict(weights)
            net = net.to(device, memory_format=memory_format(channels_last))
        with contextlib.redirect_stdout(io.StringIO()):
            bank = lambda: FeatureBank(net, device, args.img_h, args.img_w, args.test_batch, args.workers,
                                       channels_last, amp)
            bank().add(paths[:args.test_batch], Modal.VISIBLE)   # warm-up
            reset_cuda_peak(device)
            start = time.perf_counter()
            bank().add(paths, Modal.VISIBLE)
            seconds = time.perf_counter() - start
        return seconds, {'cuda_max_allocated_mb': cuda_peak(device)}

    best_of(args.repeats, [*table, *exported], measure, 'embedding', best,
            lambda s, extra: f'{len(paths) / s:.1f} images/s')
    return embedding_rows(best, len(paths))


def embedding_rows(best, images):
    return {name: {'images_per_s': images / s, 'seconds': s, **extra, 'ratio': ratios(best)[name]}
            for name, (s, extra) in best.items()}


def exported_net(weights, args, folder):
    """{row name: network} for the exported row: the visible branch of `weights` as export.py writes
    it (ONNX), run by onnxruntime on the CPU; empty, with a note, without requirements-export.txt."""
    if not (runtime_available('onnx') and importlib.util.find_spec('onnx')):
        print('note: no exported row: onnx and onnxruntime are not installed (pip install -r requirements-export.txt)')
        return {}
    net = embed_net(395)
    net.load_state_dict(weights)
    net.SEnet.set_channels()
    path = os.path.join(folder, 'visible.onnx')
    export(Embedder(net, Modal.VISIBLE), 'onnx', path, args.img_h, args.img_w, {'modality': 'visible'})
    return {'exported ONNX, onnxruntime fp32 (CPU)': ExportedNet(Exported(path), None)}


def torchvision_views(img_h, img_w):
    """The release's views with torchvision's PIL transforms, called like ours (global generators)."""
    plain = [T.Pad(10), T.RandomCrop((img_h, img_w)), T.RandomHorizontalFlip(), T.ToTensor(),
             T.Normalize(dl.IMAGENET_MEAN, dl.IMAGENET_STD), dl.ChannelRandomErasing(probability=0.5)]
    composed = (T.Compose(plain), T.Compose(plain + [dl.RandomChannelCopy()]),
                T.Compose(plain + [dl.ChannelAdaptiveGray(probability=0.5)]))
    return [lambda img, rng, gen, c=c: c(Image.fromarray(img)) for c in composed]


def bench_pipeline(args, device, best=None):
    """Training items per second, without the network: ours and torchvision's views, 0 and N workers;
    `best` as for bench_training."""
    size = args.pipeline_size
    color, thermal, labels = rendered(32, 8, size)
    n_items = 8 * 16
    names = ['ours, 1 process', 'torchvision PIL, 1 process']
    if args.workers:
        names += [f'ours, {args.workers} workers', f'torchvision PIL, {args.workers} workers']
    sets = {}
    for kind in ('ours', 'torchvision PIL'):
        sets[kind] = dl.TrainData(color, labels, thermal, labels, *size)
        if kind != 'ours':
            sets[kind].transform_plain, sets[kind].transform_visible, sets[kind].transform_thermal = \
                torchvision_views(*size)
    loaders = {}

    def measure(name):
        kind, procs = name.split(', ')
        workers = 0 if procs == '1 process' else args.workers
        if name not in loaders:   # one loader per variant, its workers kept across rounds
            batches = dl.TrainBatchSampler(labels[:n_items - 16], labels[:n_items - 16], 4, 4, seed=0)
            loaders[name] = (dl.make_train_loader(sets[kind], batches, workers, device, worker_init_fn=quiet_worker),
                             batches)
            batches.set_epoch(0)
            for _ in loaders[name][0]:   # warm-up (starts the workers)
                pass
        loader, batches = loaders[name]
        batches.set_epoch(1)
        start = time.perf_counter()
        items = sum(len(batch[4]) for batch in loader)
        return (time.perf_counter() - start) / items, {}

    return pipeline_rows(best_of(args.repeats, names, measure, 'input pipeline', best,
                                 lambda s, extra: f'{1 / s:.0f} items/s'))


def pipeline_rows(best):
    return {name: {'items_per_s': 1 / s} for name, (s, _) in best.items()}


def bench_metrics_calls(args):
    rng = np.random.default_rng(0)
    out = {}
    for name, metric in (('SYSU-MM01', eval_metrics.eval_sysu), ('LLCM', eval_metrics.eval_llcm)):
        case = ranking_case(rng, *TEST_SET_SHAPES[name])

        (seconds, _), = best_of(max(args.repeats, 3), [name], lambda _: timed(metric, *case)).values()
        out[f'{name} {case[0].shape[0]}x{case[0].shape[1]}'] = {'seconds': seconds}
    return out


# The vectorised metrics and their per-query loops: name -> (removal rule, loop).
LOOP_CASES = {'SYSU-MM01': (eval_metrics.sysu_removal, slow_metrics.reference_sysu),
              'LLCM': (eval_metrics.llcm_removal, slow_metrics.reference_llcm)}


def same_numbers(a, b):
    """CMC and mINP identical; mAP equal up to the summation order of the precisions."""
    return np.array_equal(a[0], b[0]) and a[2] == b[2] and abs(a[1] - b[1]) <= 1e-12 * abs(b[1])


def bench_metrics_loop(repeats, rng):
    """The metrics against the per-query loop, with their default threads and one thread; prints a
    table and returns {case: {seconds of each, speed-ups, same_numbers}}."""
    print(f'{"input":<10} {"queries x gallery":>18} {"loop (s)":>9} {"vectorised (s)":>15} '
          f'{"speed-up":>9} {"1 thread (s)":>13} {"speed-up":>9}  same numbers', flush=True)
    out = {}
    for name, (removal, loop) in LOOP_CASES.items():
        num_q, num_g = TEST_SET_SHAPES[name][:2]
        case = ranking_case(rng, *TEST_SET_SHAPES[name])
        vectorised = lambda workers: functools.partial(eval_metrics.evaluate, max_rank=20, removal=removal,
                                                       dedup_cmc=True, workers=workers)
        functions = {'loop': loop, 'vectorised': vectorised(None), 'one thread': vectorised(1)}
        best = best_of(repeats, list(functions), lambda k: timed(functions[k], *case))
        (t_loop, ref), (t_fast, fast), (t_one, one) = ((best[k][0], best[k][1]['result']) for k in functions)
        ok = same_numbers(fast, ref) and same_numbers(one, ref)
        print(f'{name:<10} {f"{num_q} x {num_g}":>18} {t_loop:>9.3f} {t_fast:>15.4f} '
              f'{t_loop / t_fast:>8.1f}x {t_one:>13.4f} {t_loop / t_one:>8.1f}x  {"yes" if ok else "NO"}', flush=True)
        out[f'{name} {num_q}x{num_g}'] = {'loop_s': t_loop, 'vectorised_s': t_fast, 'one_thread_s': t_one,
                                          'speed_up': t_loop / t_fast, 'same_numbers': ok}
    return out


def bench_rerank(repeats, rng):
    """Re-ranking at the SYSU-MM01 and LLCM test sizes against the per-image version (SYSU-MM01 only);
    prints a table and returns {case: {seconds, peak MB, max difference}}."""
    print(f'{"input":<10} {"queries x gallery":>18} {"per image (s)":>14} {"vectorised (s)":>15} {"speed-up":>9} '
          f'{"peak MB":>8}  max difference', flush=True)
    out = {}
    for name, loop in (('SYSU-MM01', True), ('LLCM', False)):
        num_q, num_g = TEST_SET_SHAPES[name][:2]
        q, g = rng.standard_normal((num_q, 64)), rng.standard_normal((num_g, 64))
        case = euclidean(q, g), euclidean(q, q), euclidean(g, g)
        (t_fast, fast), = best_of(max(1, repeats // 3), [name], lambda _: timed(re_ranking, *case)).values()
        peak = peak_mb(re_ranking, *case)   # timed apart: tracing slows allocation down
        row = {'seconds': t_fast, 'peak_mb': peak}
        if loop:
            t_loop, slow = timed(slow_metrics.reference_re_ranking, *case)
            diff = float(np.abs(fast['result'] - slow['result']).max())
            row.update(loop_s=t_loop, speed_up=t_loop / t_fast, max_difference=diff, same_numbers=diff <= 1e-5)
            cells = f'{t_loop:>14.2f} {t_fast:>15.3f} {t_loop / t_fast:>8.1f}x {peak:>8.0f}  {diff:.1e}'
        else:
            cells = f'{"-":>14} {t_fast:>15.3f} {"-":>9} {peak:>8.0f}  -'
        print(f'{name:<10} {f"{num_q} x {num_g}":>18} {cells}', flush=True)
        out[f'{name} {num_q}x{num_g}'] = row
    return out


COST_MODELS = {'IFALNet': True, 'two-stream baseline (--no-middle)': False}
COST_CLASSES = 395   # SYSU-MM01's training identities: the classifier's size


def bench_cost(args, device, folder, out=None):
    """Parameters and FLOPs of each model, and latency, images per second and peak memory of its
    visible branch on each runtime (PyTorch on the CPU, ONNX Runtime on the CPU, PyTorch on CUDA).
    `out`, a dict, is filled as the figures come, so that an interrupted run still has them."""
    (h, w), batches = args.cost_size, sorted({1, args.cost_batch})
    out = {} if out is None else out
    out.update({'img_h': h, 'img_w': w, 'classes': COST_CLASSES, 'batches': batches, 'models': {}, 'runtimes': {}})
    for name, middle in COST_MODELS.items():
        print(f'  cost: {name}: parameters and FLOPs ...', end='', flush=True)
        torch.manual_seed(0)
        net = costs.build(COST_CLASSES, middle)
        model = {**costs.parameter_counts(net), 'test_image_flops': costs.test_flops(COST_CLASSES, middle, h, w),
                 'training_item_flops': costs.training_flops(COST_CLASSES, middle, h, w)}
        out['models'][name] = model
        print(f' {model["network"] / 1e6:.2f}M parameters, {model["test_image_flops"] / 1e9:.1f} GFLOP per test image',
              flush=True)
        loaders = {f'{name}, PyTorch fp32 CPU': ('cpu', costs.TorchBranch(COST_CLASSES, middle))}
        if runtime_available('onnx') and importlib.util.find_spec('onnx'):
            path = os.path.join(folder, f'{"ifalnet" if middle else "baseline"}.onnx')
            print(f'  cost: {name}: exporting the visible branch to ONNX ...', flush=True)
            export(Embedder(net, Modal.VISIBLE), 'onnx', path, h, w, {'modality': 'visible'})
            loaders[f'{name}, ONNX Runtime fp32 CPU'] = ('onnx', costs.ExportedBranch(path))
        if device.type == 'cuda':
            loaders[f'{name}, PyTorch fp32 CUDA'] = ('cuda', None)
        for row, (kind, loader) in loaders.items():
            cost_row(out['runtimes'].setdefault(row, {}), row, kind, loader, net, batches, h, w, args.repeats, device)
    return out


def cost_row(out, row, kind, loader, net, batches, h, w, repeats, device):
    """Fills `out` with {'batch_<b>': {'seconds', 'ms_per_image', 'images_per_s', 'peak_mb'}} of one
    runtime, each figure printed as it comes."""
    if kind == 'cuda':
        embedder = Embedder(net.to(device, memory_format=torch.channels_last), Modal.VISIBLE)

        def call(images):
            with torch.inference_mode():
                embedder(images)
            torch.cuda.synchronize()
        run = lambda b: lambda: call(torch.zeros(b, 3, h, w, device=device).contiguous(memory_format=torch.channels_last))
    else:
        branch = loader()
        run = lambda b: functools.partial(branch, np.random.default_rng(0).standard_normal((b, 3, h, w), np.float32))
    for b in batches:
        reset_cuda_peak(device)
        call_batch = run(b)
        call_batch()   # one untimed call first (allocations, kernel choice)
        (seconds, _), = best_of(repeats, [f'{row}, batch {b}'], lambda _: timed(call_batch), 'cost',
                                report=lambda t, _: f'{1000 * t / b:.1f} ms per image, {b / t:.2f} images/s').values()
        out[f'batch_{b}'] = {'seconds': seconds, 'ms_per_image': 1000 * seconds / b, 'images_per_s': b / seconds,
                             'peak_mb': cuda_peak(device) if kind == 'cuda' else None}
    if kind == 'cuda':
        net.to('cpu')
    else:
        print(f'  cost: {row}: peak memory (a child process) ...', end='', flush=True)
        peaks = costs.peak_memory(loader, batches, h, w)
        for b, peak in zip(batches, peaks):
            out[f'batch_{b}']['peak_mb'] = peak
        print(' ' + ', '.join(f'batch {b}: {peak:.0f} MB' for b, peak in zip(batches, peaks)), flush=True)
    return out


def print_cost(cost, repeats, interrupted=False):
    """The cost part's two tables; `interrupted`: of what was measured so far ('-' for the rest)."""
    h, w, small, large = cost['img_h'], cost['img_w'], cost['batches'][0], cost['batches'][-1]
    note = ', interrupted: what was measured so far' if interrupted else ''
    rows = {name: {**m, 'test_gflop': m['test_image_flops'] / 1e9, 'train_gflop': m['training_item_flops'] / 1e9,
                   **{k: m[k] / 1e6 for k in ('network', 'branch', 'branch_with_classifier')}}
            for name, m in cost['models'].items()}
    print_table(f'Cost at {h}x{w}: parameters (millions; {cost["classes"]} classes), FLOPs per test image (one '
                'branch, original and middle streams) and per training item (a visible and an infrared image, four '
                f'views, forward and backward){note}', rows,
                [('network M', ('network', '.2f')), ('branch M', ('branch', '.2f')),
                 ('+classifier M', ('branch_with_classifier', '.2f')), ('test GFLOP', ('test_gflop', '.1f')),
                 ('train GFLOP', ('train_gflop', '.1f'))])
    rows = {row: {f'{k}_{b}': v for b in (small, large) for k, v in r.get(f'batch_{b}', {}).items()}
            for row, r in cost['runtimes'].items()}
    if not rows:
        return
    print_table(f'Latency of the visible branch at {h}x{w} (the network alone; best of {repeats}), peak memory '
                f'(what a process adds to load the branch and embed the batch; on CUDA the peak allocated){note}', rows,
                [(f'b{small} ms/image', (f'ms_per_image_{small}', '.1f')),
                 (f'b{small} images/s', (f'images_per_s_{small}', '.2f')),
                 (f'b{large} images/s', (f'images_per_s_{large}', '.2f')),
                 (f'b{small} peak MB', (f'peak_mb_{small}', '.0f')), (f'b{large} peak MB', (f'peak_mb_{large}', '.0f'))])


def print_table(title, rows, columns):
    width = max(map(len, rows)) + 2   # the longest name, and room
    print(f'\n{title}')
    print(f'  {"":<{width}}' + ''.join(f'{header:>14}' for header, _ in columns))
    for name, row in rows.items():
        cells = []
        for _, (key, fmt) in columns:
            cells.append(f'{"-" if row.get(key) is None else format(row[key], fmt):>14}')
        print(f'  {name:<{width}}' + ''.join(cells))


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        check_output_file(args.json, '--json')
    device = select_device(args.gpu)
    report = {'device': torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu',
              'torch': torch.__version__, 'threads': torch.get_num_threads(), 'cpus': os.cpu_count(),
              'img_h': args.img_h, 'img_w': args.img_w, 'workers': args.workers,
              'environment': stamp(device)}   # the versions and the machine, as every file the scripts write
    print(f'bench: {report["device"]} ({device.type}), torch {torch.__version__}, {report["threads"]} threads, '
          f'{args.img_h}x{args.img_w} images, {args.workers} loader workers, best of {args.repeats}', flush=True)
    skipped = variants(device, args.all_variants)[1]
    report['skipped_variants'] = skipped
    if skipped and {'train', 'embed'} & set(args.parts):
        print(SKIPPED_NOTE.format(', '.join(skipped)), flush=True)
    h, w = args.pipeline_size
    tables = {   # part: (title, columns, rows of a part's best_of figures, measured so far or all)
        'train': (f'Training step, 4 ids x 4 images x 2 modalities, {args.img_h}x{args.img_w} '
                  f'(best of {args.repeats} x {args.steps} steps)',
                  [('step s', ('step_s', '.3f')), ('data wait s', ('data_wait_s', '.3f')),
                   ('compute s', ('compute_s', '.3f')), ('vs fp32', ('ratio', '.2f')),
                   ('CUDA MB', ('cuda_max_allocated_mb', '.0f'))], training_rows),
        'embed': (f'Test embedding, {args.embed_images} JPEGs {2 * args.img_h}x{2 * args.img_w} tested at '
                  f'{args.img_h}x{args.img_w}, batch {args.test_batch}',
                  [('images/s', ('images_per_s', '.1f')), ('seconds', ('seconds', '.2f')),
                   ('time vs fp32', ('ratio', '.2f')), ('CUDA MB', ('cuda_max_allocated_mb', '.0f'))],
                  lambda best: embedding_rows(best, args.embed_images)),
        'pipeline': (f'Training input pipeline at {h}x{w} (items of four views)', [('items/s', ('items_per_s', '.0f'))],
                     pipeline_rows),
    }
    partial = {}   # part: the best_of figures it has so far
    partial_cost = {}   # the cost part's figures so far (bench_cost fills it as they come)
    try:
        if 'train' in args.parts:
            print('training ...', flush=True)
            report['train'] = bench_training(args, device, partial.setdefault('train', {}))
            print_table(*tables['train'][:1], report['train'], tables['train'][1])
        if 'embed' in args.parts:
            print('\nembedding ...', flush=True)
            with tempfile.TemporaryDirectory() as folder:
                report['embed'] = bench_embedding(args, device, folder, partial.setdefault('embed', {}))
            print_table(*tables['embed'][:1], report['embed'], tables['embed'][1])
        if 'pipeline' in args.parts:
            print('\ninput pipeline ...', flush=True)
            report['pipeline'] = bench_pipeline(args, device, partial.setdefault('pipeline', {}))
            print_table(*tables['pipeline'][:1], report['pipeline'], tables['pipeline'][1])
        if 'metrics' in args.parts:
            report['metrics'] = bench_metrics_calls(args)
            print_table('Metrics, one call (release CMC, mAP, mINP)', report['metrics'], [('seconds', ('seconds', '.4f'))])
        if 'loop' in args.parts:
            print('\nMetrics against the per-query loop (best of {}):'.format(max(args.repeats, 7)), flush=True)
            report['loop'] = bench_metrics_loop(max(args.repeats, 7), np.random.default_rng(0))
        if 'rerank' in args.parts:
            print('\nRe-ranking against the per-image version:', flush=True)
            report['rerank'] = bench_rerank(max(args.repeats, 7), np.random.default_rng(0))
        if 'cost' in args.parts:
            print('\ncost ...', flush=True)
            with tempfile.TemporaryDirectory() as folder:
                report['cost'] = bench_cost(args, device, folder, partial_cost)
            print_cost(report['cost'], args.repeats)
    except (Interrupted, KeyboardInterrupt):
        # The part in progress: its table of what was measured (the finished parts' tables are above).
        for part, best in partial.items():
            if part not in report and best:
                title, columns, rows = tables[part]
                print_table(f'{title}, interrupted: the {len(best)} variant(s) measured so far', rows(best), columns)
        if 'cost' not in report and partial_cost.get('models'):
            print_cost(partial_cost, args.repeats, interrupted=True)
        raise
    report['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'\npeak resident memory {report["peak_rss_mb"]:.0f} MB')
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')
        print(f'figures written to {args.json}')
    agree = [row['same_numbers'] for part in ('loop', 'rerank') for row in report.get(part, {}).values()
             if 'same_numbers' in row]
    if not all(agree):
        print('the vectorised version and its slow reference disagree (see above)', file=sys.stderr)
        sys.exit(1)
    return report


if __name__ == '__main__':
    run_main(main)
