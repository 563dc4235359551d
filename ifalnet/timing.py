"""Time the vectorised metrics (eval_metrics.py) against the straightforward per-query loop
(reference_metrics.py) on SYSU-MM01- and LLCM-sized inputs, and check the numbers agree.

    python3 bench_metrics.py [--repeats 7] [--seed 0]
    python3 bench_metrics.py --rerank        # k-reciprocal re-ranking instead (rerank.py)

Both timings include the ranking work each needs (the loop's np.argsort of the whole matrix, as
the release does). The vectorised version runs with its default threads (one per CPU) and with
one thread. Times are the best of `--repeats` runs, taken in turn, so that passing load on the
machine inflates every column alike.

`--rerank` times rerank.re_ranking (k1 20, k2 6, lambda 0.3) against the per-image version of
reference_metrics.py at the SYSU-MM01 size (the loop once: it takes tens of seconds), and alone at
the LLCM size, with the peak memory it allocates (tracemalloc: numpy's and scipy's arrays).
"""
import functools
import sys
import time
import tracemalloc

import numpy as np

import eval_metrics
import reference_metrics
from flags import add_flag, make_parser
from rerank import euclidean, re_ranking
from synthetic import TEST_SET_SHAPES, ranking_case

# name: (removal rule, loop)
CASES = {
    'SYSU-MM01': (eval_metrics.sysu_removal, reference_metrics.reference_sysu),
    'LLCM': (eval_metrics.llcm_removal, reference_metrics.reference_llcm),
}


def best_times(functions, args, repeats):
    """Best wall time of each function over `repeats` alternating runs, and its last result."""
    best = [float('inf')] * len(functions)
    results = [None] * len(functions)
    for _ in range(repeats):
        for i, fn in enumerate(functions):
            start = time.perf_counter()
            results[i] = fn(*args)
            best[i] = min(best[i], time.perf_counter() - start)
    return best, results


def same_numbers(a, b):
    """CMC and mINP identical; mAP equal up to the summation order of the precisions."""
    return (np.array_equal(a[0], b[0]) and a[2] == b[2]
            and abs(a[1] - b[1]) <= 1e-12 * abs(b[1]))


def vectorised(removal, workers):
    """eval_sysu / eval_llcm with a given number of threads."""
    return functools.partial(eval_metrics.evaluate, max_rank=20, removal=removal,
                             dedup_cmc=True, workers=workers)


def peak_mb(fn, *args):
    """Peak memory one call allocates (tracemalloc: numpy's and scipy's arrays), in MB."""
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return peak


def bench_rerank(rng, repeats):
    """Re-ranking at the SYSU-MM01 and LLCM test sizes; 0 when the two versions agree."""
    print(f'{"input":<10} {"queries x gallery":>18} {"per image (s)":>14} {"vectorised (s)":>15} {"speed-up":>9} '
          f'{"peak MB":>8}  max difference', flush=True)
    ok = True
    for name, loop in (('SYSU-MM01', True), ('LLCM', False)):
        num_q, num_g = TEST_SET_SHAPES[name][:2]
        q, g = rng.standard_normal((num_q, 64)), rng.standard_normal((num_g, 64))
        case = euclidean(q, g), euclidean(q, q), euclidean(g, g)
        (t_fast,), (fast,) = best_times([re_ranking], case, max(1, repeats // 3))
        peak = peak_mb(re_ranking, *case)   # timed apart: tracing slows allocation down
        if loop:
            (t_loop,), (slow,) = best_times([reference_metrics.reference_re_ranking], case, 1)
            diff = float(np.abs(fast - slow).max())
            ok &= diff <= 1e-5
            cells = f'{t_loop:>14.2f} {t_fast:>15.3f} {t_loop / t_fast:>8.1f}x {peak:>8.0f}  {diff:.1e}'
        else:
            cells = f'{"-":>14} {t_fast:>15.3f} {"-":>9} {peak:>8.0f}  -'
        print(f'{name:<10} {f"{num_q} x {num_g}":>18} {cells}', flush=True)
    return 0 if ok else 1


def main():
    parser = make_parser(__doc__.split('\n\n')[0], alias_note=False)
    add_flag(parser, '--repeats', type=int, default=7, help='runs per timing (best is kept)')
    add_flag(parser, '--seed', type=int, default=0, help='seed of the random inputs')
    add_flag(parser, '--rerank', action='store_true', help='time k-reciprocal re-ranking instead of the metrics')
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.rerank:
        sys.exit(bench_rerank(rng, args.repeats))
    print(f'{"input":<10} {"queries x gallery":>18} {"loop (s)":>9} {"vectorised (s)":>15} '
          f'{"speed-up":>9} {"1 thread (s)":>13} {"speed-up":>9}  same numbers')
    all_ok = True
    for name, (removal, loop) in CASES.items():
        num_q, num_g = TEST_SET_SHAPES[name][:2]
        case = ranking_case(rng, *TEST_SET_SHAPES[name])
        functions = [loop, vectorised(removal, None), vectorised(removal, 1)]
        (t_loop, t_fast, t_one), (ref, *got) = best_times(functions, case, args.repeats)
        ok = all(same_numbers(g, ref) for g in got)
        all_ok &= ok
        print(f'{name:<10} {f"{num_q} x {num_g}":>18} {t_loop:>9.3f} {t_fast:>15.4f} '
              f'{t_loop / t_fast:>8.1f}x {t_one:>13.4f} {t_loop / t_one:>8.1f}x  '
              f'{"yes" if ok else "NO"}')
    sys.exit(0 if all_ok else 1)


if __name__ == '__main__':
    main()
