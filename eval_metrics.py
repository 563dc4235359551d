"""Re-identification metrics (CMC, mAP, mINP) with the release's semantics, vectorised.

The release ranks every query with `np.argsort(distmat, axis=1)` and then walks the queries in a
Python loop. Here the numbers come from counts over all queries at once:
- the rank of a true match is 1 + the number of kept gallery items closer than it (found in the
  query's row sorted by value, which is several times cheaper than an argsort);
- the position of the query's identity in the identity-deduplicated list is the number of other
  identities whose closest kept item is closer than the query identity's closest one.
Without ties these counts are exactly what any ranking gives. Ties are where the release's
`np.argsort` decides; every query whose counts could depend on a tie is detected and recomputed
from that very `np.argsort` of its row (rows are sorted independently of one another, so sorting
only those rows orders them as the whole-matrix call does).
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils import ReIDError


def sysu_removal(same_id, q_cams, g_cams):
    """SYSU-MM01: a query from camera 3 does not see gallery camera 2."""
    return (q_cams == 3) & (g_cams == 2)


def llcm_removal(same_id, q_cams, g_cams):
    """LLCM: gallery images of the query's identity taken by the query's camera are removed."""
    return same_id & (q_cams == g_cams)


def eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, sysu_removal, True)


def eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, llcm_removal, True)


def eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    return evaluate(distmat, q_pids, g_pids, None, None, max_rank, None, False)


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, removal, dedup_cmc,
             workers=None):
    """(cmc float32 (max_rank,), mAP, mINP), computed as the release computes them.

    distmat (num_q, num_g), smaller = more similar. `removal(same_id, q_cams, g_cams)` says, with
    broadcasting, which gallery items a query does not see (None: it sees all). With `dedup_cmc`
    the CMC counts every gallery identity once, at its first kept position (SYSU, LLCM);
    otherwise it is the standard CMC (RegDB). Queries without a true match among the items they
    see are left out of mAP and mINP, and the CMC is divided by the number of the others. (The
    release adds the deduplicated CMC rows of those queries too, but they are all zeros.) Where
    the release would build ragged CMC rows (fewer kept items or identities than max_rank) a
    row's last value is carried forward. `workers`: threads (default: one per CPU, at most 8).
    """
    distmat, q_pids, g_pids, q_camids, g_camids = check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, removal)
    num_g = distmat.shape[1]
    max_rank = min(max_rank, num_g)
    ranks, first_pos = all_query_counts(distmat, q_pids, q_camids, GalleryLayout(g_pids, g_camids),
                                        removal, dedup_cmc, workers=workers)

    num_matches = np.count_nonzero(ranks <= num_g, axis=1)  # (num_q,)
    valid = num_matches > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ReIDError('no query has a true match among the gallery items it sees; '
                        'check that query and gallery identities use the same labels')
    ranks, num_matches, first_pos = ranks[valid], num_matches[valid], first_pos[valid]

    # The j-th true match (1-based) at kept rank r has precision j / r; the release sums these
    # over its list with np.sum, here they are summed in rank order (same up to rounding).
    hits = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)
    ap = np.where(ranks <= num_g, hits / ranks, 0.0).sum(1) / num_matches
    inp = num_matches / ranks[np.arange(num_valid), num_matches - 1].astype(np.float64)

    hit_pos = first_pos if dedup_cmc else ranks[:, 0] - 1  # 0-based CMC position of the first hit
    counts = np.bincount(np.minimum(hit_pos, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = counts.cumsum().astype(np.float32) / float(num_valid)
    return cmc, np.mean(ap), np.mean(inp)


def check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, removal):
    distmat = np.asarray(distmat)
    if distmat.ndim != 2 or not (np.issubdtype(distmat.dtype, np.floating)
                                 or np.issubdtype(distmat.dtype, np.integer)):
        raise ValueError(f'distmat must be a 2-D array of numbers, got shape {distmat.shape} '
                         f'and dtype {distmat.dtype}')
    num_q, num_g = distmat.shape
    if num_q == 0 or num_g == 0:
        raise ReIDError(f'nothing to evaluate: distmat has shape {distmat.shape}')
    if num_g >= 1 << 24:
        raise ValueError(f'a gallery of {num_g} items is too large: ranks are kept in float32')
    arrays = {'q_pids': (q_pids, num_q), 'g_pids': (g_pids, num_g)}
    if removal is not None:
        arrays.update(q_camids=(q_camids, num_q), g_camids=(g_camids, num_g))
    out = {}
    for name, (values, size) in arrays.items():
        values = np.asarray(values)
        if values.shape != (size,):
            raise ValueError(f'{name} must have shape ({size},) to match distmat {distmat.shape}, '
                             f'got {values.shape}')
        out[name] = values
    return distmat, out['q_pids'], out['g_pids'], out.get('q_camids'), out.get('g_camids')


class GalleryLayout:
    """The gallery columns in "slot-major" order, so that per-identity minima are elementwise
    minima of contiguous slices: slot s holds the s-th item of every identity with more than s
    items, identities ordered by decreasing item count so that every slot is a prefix of the
    previous one. One scratch column (index G) follows; padded item positions point at it.
    """

    def __init__(self, g_pids, g_camids):
        num_g = len(g_pids)
        ids, inverse, counts = np.unique(g_pids, return_inverse=True, return_counts=True)
        order = np.argsort(-counts, kind='stable')  # identities, most items first
        self.ids, counts = ids[order], counts[order]
        identity = np.empty_like(order)
        identity[order] = np.arange(len(order))
        identity = identity[inverse]  # (G,) layout identity of every gallery column
        by_identity = np.argsort(identity, kind='stable')
        first = np.cumsum(counts) - counts
        slot = np.arange(num_g) - np.repeat(first, counts)  # item number within its identity
        self.widths = (counts > np.arange(counts.max())[:, None]).sum(1)  # (n_max,) per slot
        self.offsets = np.cumsum(self.widths) - self.widths
        perm = np.empty(num_g + 1, dtype=np.intp)  # slot-major position -> gallery column
        perm[self.offsets[slot] + identity[by_identity]] = by_identity
        perm[num_g] = 0  # the scratch column's value is overwritten
        self.perm = perm
        # (K + 1, n_max) slot-major positions of every identity's items, G past its count; the
        # last row (index -1) stands for query identities the gallery does not have.
        item_pos = np.where(np.arange(len(self.widths)) < counts[:, None],
                            self.offsets + np.arange(len(ids))[:, None], num_g)
        self.item_pos = np.vstack([item_pos, np.full(len(self.widths), num_g)])
        self.cams = None if g_camids is None else g_camids[perm]

    def identity_index(self, q_pids):
        """Layout index of every query's identity, -1 if the gallery does not have it."""
        order = np.argsort(self.ids)
        at = np.clip(np.searchsorted(self.ids, q_pids, sorter=order), 0, len(self.ids) - 1)
        return np.where(self.ids[order[at]] == q_pids, order[at], -1)

    def identity_minima(self, block):
        """(R, K) per-identity minimum of an (R, G + 1) block in slot-major order."""
        minima = block[:, :self.widths[0]].copy()
        for offset, width in zip(self.offsets[1:], self.widths[1:]):
            np.minimum(minima[:, :width], block[:, offset:offset + width], out=minima[:, :width])
        return minima


def all_query_counts(distmat, q_pids, q_camids, gallery, removal, dedup_cmc,
                     block_elements=1 << 20, workers=None):
    """Per query: the 1-based kept ranks of its true matches (ascending, G + 1 past the last)
    and the 0-based position of its identity in the identity-deduplicated list (0 unless
    `dedup_cmc`). Row blocks of about `block_elements` values (a few cache-sized float32
    arrays) go to `workers` threads; numpy releases the GIL in the heavy steps."""
    num_q, num_g = distmat.shape
    q_ident = gallery.identity_index(q_pids)
    hidden_cols = {}  # query camera -> slot-major columns of other identities it does not see
    if removal is not None:
        for cam in np.unique(q_camids):
            cols = np.flatnonzero(removal(False, cam, gallery.cams))
            if len(cols):
                hidden_cols[cam] = cols
    # Blocks of about `block_elements` values, as many for every worker.
    workers = min(workers or os.cpu_count() or 1, 8)
    num_blocks = -(-num_q * num_g // (block_elements * workers)) * workers
    step = -(-num_q // num_blocks)
    local = threading.local()

    def counts(block, rows):
        if not hasattr(local, 'scratch'):  # float32 work arrays, reused: fresh pages cost
            local.scratch = (np.empty((step, num_g), np.float32),
                             np.empty((step, num_g + 1), np.float32))
        cams = None if q_camids is None else q_camids[rows]
        return query_counts(block, q_ident[rows], cams, gallery, removal, hidden_cols,
                            dedup_cmc, local.scratch)

    ranks = np.empty((num_q, len(gallery.widths)), dtype=np.int64)
    first_pos = np.empty(num_q, dtype=np.int64)
    ambiguous = np.empty(num_q, dtype=bool)

    def run(start):
        rows = slice(start, start + step)
        ranks[rows], first_pos[rows], ambiguous[rows] = counts(distmat[rows], rows)

    starts = range(0, num_q, step)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)

    redo = np.flatnonzero(ambiguous)
    for start in range(0, len(redo), step):
        rows = redo[start:start + step]
        # The release's order of these rows as distinct values: the same counts now follow the
        # order np.argsort gives tied items.
        order = np.argsort(distmat[rows], axis=1)
        exact = np.empty(order.shape, dtype=np.float32)
        np.put_along_axis(exact, order, np.arange(num_g, dtype=np.float32)[None, :], axis=1)
        ranks[rows], first_pos[rows], still = counts(exact, rows)
        assert not still.any(), 'distinct rank values cannot tie'
    return ranks, first_pos


def query_counts(block, q_ident, q_cams, gallery, removal, hidden_cols, dedup_cmc, scratch):
    """The counts of `all_query_counts` for one block of rows, plus `ambiguous` (R,): rows to
    redo because a count could depend on how a tie is ordered, or the row is not finite.

    Works in float32: rounding to float32 is monotone, so a strict float32 order is the float64
    order, and float32 ties (a superset of float64 ties) are caught. A row is ambiguous when a
    true match has an equal value next to it in the sorted row; that also covers an identity
    whose closest item ties with the query identity's closest one. Removed items become the
    largest float32, which sorts after every kept finite value.
    """
    num_r, num_g = block.shape
    hidden = np.finfo(np.float32).max
    values = scratch[0][:num_r]
    with np.errstate(over='ignore'):  # beyond float32: infinite, so the row is redone
        np.copyto(values, block, casting='same_kind')
    work = scratch[1][:num_r]  # (R, G + 1) slot-major order, then the scratch column
    np.take(values, gallery.perm, axis=1, out=work, mode='clip')
    work[:, num_g] = hidden
    flat = work.reshape(-1)

    # The query identity's items, the padding pointing at the scratch column.
    item_pos = gallery.item_pos[q_ident]  # (R, n_max)
    flat_pos = item_pos + (np.arange(num_r) * (num_g + 1))[:, None]
    own = flat[flat_pos]
    kept = item_pos < num_g
    if removal is not None:
        kept &= ~removal(True, q_cams[:, None], gallery.cams[item_pos])
    for cam, cols in hidden_cols.items():
        work[np.flatnonzero(q_cams == cam)[:, None], cols] = hidden
    own = np.where(kept, own, hidden)  # (R, n_max) values of the kept true matches
    flat[flat_pos] = own

    first_pos = np.zeros(num_r, dtype=np.int64)
    if dedup_cmc:
        minima = gallery.identity_minima(work)  # (R, K)
        first_pos = (minima < own.min(1)[:, None]).sum(1)

    work.sort(axis=1)
    ambiguous = ~(np.isfinite(work[:, 0]) & np.isfinite(work[:, -1]))
    r_idx, s_idx = np.nonzero(kept)
    below, tied = count_below(flat, num_g + 1, r_idx, own[r_idx, s_idx])
    ambiguous[r_idx[tied]] = True
    ranks = np.full(kept.shape, num_g + 1, dtype=np.int64)
    ranks[r_idx, s_idx] = below + 1
    ranks.sort(axis=1)
    return ranks, first_pos, ambiguous


def count_below(flat_rows, width, rows, values):
    """For values taken from the given rows of `flat_rows` (rows of `width` entries, sorted
    ascending, each ending in an entry larger than every value searched for): how many entries
    of the row are smaller than the value, and whether another entry equals it.

    One binary search for all pairs at once (np.searchsorted takes one row at a time). The
    first probe covers a width that is not a power of two, so later probes stay in the row.
    """
    step = 1 << (width.bit_length() - 1)
    probe = rows * width  # start of the row, then the first entry not known to be smaller
    probe += np.where(flat_rows[probe + (step - 1)] < values, width - step, 0)
    step >>= 1
    while step:
        np.add(probe, step, out=probe, where=flat_rows[probe + (step - 1)] < values)
        step >>= 1
    # flat_rows[probe] is the value's first occurrence; a tie shows right after it. (The clip
    # only matters for rows that hold infinities, which are redone anyway.)
    tied = flat_rows[np.minimum(probe + 1, len(flat_rows) - 1)] == values
    return probe - rows * width, tied
