"""Slow, obviously correct per-query metrics, written from the release's evaluation (its per-query loop
over one `np.argsort` of the whole matrix), and k-reciprocal re-ranking one image at a time, written
from the paper: the yardsticks of eval_metrics.py and rerank.py (tests) and their baselines
(`bench.py --parts loop,rerank`).

Like the release, it ranks every query with one `np.argsort(distmat, axis=1)` over the whole
matrix, then walks the queries one by one.
"""
import numpy as np


def removed_sysu(q_pid, q_cam, g_pids, g_cams):
    return (q_cam == 3) & (g_cams == 2)


def removed_llcm(q_pid, q_cam, g_pids, g_cams):
    return (g_pids == q_pid) & (g_cams == q_cam)


def removed_none(q_pid, q_cam, g_pids, g_cams):
    return np.zeros(len(g_pids), dtype=bool)


def first_rows(rows, max_rank):
    """Stack per-query CMC rows cut at max_rank; a short row carries its last value forward
    (the release would fail on such ragged rows)."""
    out = np.zeros((len(rows), max_rank), dtype=np.float32)
    for i, row in enumerate(rows):
        row = row[:max_rank]
        out[i, :len(row)] = row
        if 0 < len(row) < max_rank:
            out[i, len(row):] = row[-1]
    return out


def reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, removed, dedup_cmc):
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    dedup_rows, cmc_rows, all_ap, all_inp = [], [], [], []
    for q in range(num_q):
        order = indices[q]
        keep = ~removed(q_pids[q], q_camids[q], g_pids[order], g_camids[order])
        kept_pids = g_pids[order][keep]

        _, first_index = np.unique(kept_pids, return_index=True)
        dedup_pids = kept_pids[np.sort(first_index)]
        dedup_rows.append((dedup_pids == q_pids[q]).astype(np.int32).cumsum())

        matches = (kept_pids == q_pids[q]).astype(np.int32)
        if not matches.any():
            continue
        hits = matches.cumsum()
        last = np.flatnonzero(matches)[-1]
        all_inp.append(hits[last] / (last + 1.0))
        cmc_rows.append(np.minimum(hits, 1))
        precision = hits / np.arange(1.0, len(hits) + 1.0)
        all_ap.append((precision * matches).sum() / matches.sum())

    num_valid = float(len(all_ap))
    assert num_valid > 0, 'no query has a true match in the gallery'
    rows = dedup_rows if dedup_cmc else cmc_rows
    cmc = first_rows(rows, max_rank).sum(0) / num_valid
    return cmc, np.mean(all_ap), np.mean(all_inp)


def reference_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, removed_sysu, True)


def reference_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, removed_llcm, True)


def reference_regdb(distmat, q_pids, g_pids, max_rank=20):
    cams = np.zeros(len(q_pids), dtype=np.int64), np.zeros(len(g_pids), dtype=np.int64)
    return reference_eval(distmat, q_pids, g_pids, *cams, max_rank, removed_none, False)


def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) one image at a time, as the paper's
    algorithm reads and the authors' code runs it (their conventions: squared distances scaled per
    column by the maximum; neighbours by distance, exact ties by index; float32 where they keep
    float16)."""
    num_q = q_g_dist.shape[0]
    dist = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                           np.concatenate([q_g_dist.T, g_g_dist], axis=1)]).astype(np.float32) ** 2
    dist = np.transpose(dist / np.max(dist, axis=0))
    n = dist.shape[0]
    rank = np.argsort(dist, kind='stable').astype(np.int32)

    def reciprocal(i, k):
        """The images among i's k + 1 nearest that have i among their own k + 1 nearest."""
        forward = rank[i, :k + 1]
        return forward[np.any(rank[forward, :k + 1] == i, axis=1)]

    encoding = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        members = reciprocal(i, k1)
        expanded = members
        for candidate in members:
            theirs = reciprocal(candidate, int(np.around(k1 / 2)))
            if len(np.intersect1d(theirs, members)) > 2 / 3 * len(theirs):
                expanded = np.append(expanded, theirs)
        expanded = np.unique(expanded)
        weights = np.exp(-dist[i, expanded])
        encoding[i, expanded] = weights / np.sum(weights)
    if k2 != 1:   # local query expansion
        expanded_query = np.zeros_like(encoding)
        for i in range(n):
            expanded_query[i] = np.mean(encoding[rank[i, :k2]], axis=0)
        encoding = expanded_query
    holders = [np.nonzero(encoding[:, f])[0] for f in range(n)]   # the images whose encoding has feature f
    jaccard = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        overlap = np.zeros(n, dtype=np.float32)
        for f in np.nonzero(encoding[i])[0]:
            overlap[holders[f]] += np.minimum(encoding[i, f], encoding[holders[f], f])
        jaccard[i] = 1 - overlap / (2 - overlap)
    return (jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value)[:, num_q:]
