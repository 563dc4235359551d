"""Time the vectorised metrics (eval_metrics.py) against the straightforward per-query loop
(reference_metrics.py) on SYSU-MM01- and LLCM-sized inputs, and check the numbers agree.

    python3 bench_metrics.py [--repeats 7] [--seed 0]

Both timings include the ranking work each needs (the loop's np.argsort of the whole matrix, as
the release does). The vectorised version runs with its default threads (one per CPU) and with
one thread. Times are the best of `--repeats` runs, taken in turn, so that passing load on the
machine inflates every column alike.
"""
import functools
import sys
import time

import numpy as np

import eval_metrics
import reference_metrics
from flags import add_flag, make_parser
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


def main():
    parser = make_parser(__doc__.split('\n\n')[0], alias_note=False)
    add_flag(parser, '--repeats', type=int, default=7, help='runs per timing (best is kept)')
    add_flag(parser, '--seed', type=int, default=0, help='seed of the random inputs')
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
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
