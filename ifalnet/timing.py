"""The timing helper of bench.py: the best of several rounds, peak memory, and random test-set-sized
score matrices to time the metrics on.

`best_of` runs every variant in turn, round after round, and keeps the best time of each, so that
passing load on a shared machine inflates all of them alike; `peak_mb` is the memory one call
allocates (tracemalloc: numpy's and scipy's arrays); `ranking_case` makes a distance matrix, identities
and cameras shaped like a real test set (`TEST_SET_SHAPES`).
"""
import time
import tracemalloc

import numpy as np


def best_of(repeats, names, measure, part=None, best=None, report=None):
    """{name: (best seconds, extra)} with `measure(name)` -> (seconds, extra dict), the names taken in
    turn, `repeats` rounds. With `part`, a progress line for each measurement, ended by `report(seconds,
    extra)` (its figure, as it comes) or 'done'. `best`, a dict, is filled as measurements come in, so
    that a caller interrupted half-way still has the figures measured so far."""
    best = {} if best is None else best
    for round_ in range(1, repeats + 1):
        for name in names:
            if part:
                print(f'  {part}: {name} (round {round_} of {repeats}) ...', end='', flush=True)
            seconds, extra = measure(name)
            if part:
                print(f' {report(seconds, extra) if report else "done"}', flush=True)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, extra)
    return best


def timed(fn, *args):
    """A `best_of` measure of one call: (seconds, {'result': what it returned})."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, {'result': result}


def peak_mb(fn, *args):
    """Peak memory one call allocates (tracemalloc: numpy's and scipy's arrays), in MB."""
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return peak


# Query and gallery sizes of the real test sets, for timing the metrics: (queries, gallery images,
# identities, query cameras, gallery cameras, at most one gallery image per identity and camera).
TEST_SET_SHAPES = {
    # all-search, single-shot: at most one gallery image per identity and visible camera
    'SYSU-MM01': (3803, 301, 96, (3, 6), (1, 2, 4, 5), True),
    'LLCM': (8680, 1500, 351, tuple(range(1, 10)), tuple(range(1, 10)), False),
}


def ranking_case(rng, num_q, num_g, num_ids, q_cams, g_cams, one_per_camera, dim=64):
    """Random features -> (distmat = -q @ g.T in float64, q_pids, g_pids, q_camids, g_camids). The
    gallery lists its images identity by identity, as the datasets do: either one image for a
    random set of (identity, camera) pairs, or identities and cameras drawn independently. Queries
    come from gallery identities."""
    if one_per_camera:
        pairs = rng.choice(num_ids * len(g_cams), num_g, replace=False)
        pairs.sort()
        g_pids, g_camids = pairs // len(g_cams), np.asarray(g_cams)[pairs % len(g_cams)]
    else:
        g_pids, g_camids = np.sort(rng.integers(num_ids, size=num_g)), rng.choice(g_cams, num_g)
    q_pids = rng.choice(np.unique(g_pids), num_q)
    q = rng.standard_normal((num_q, dim))
    g = rng.standard_normal((num_g, dim))
    return -(q @ g.T), q_pids, g_pids, rng.choice(q_cams, num_q), g_camids
