"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), vectorised: `re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)`.

The inputs, conventions and result are those of the authors' published code: Euclidean distances
in, squared and divided per column by the column's maximum; each image's k-reciprocal neighbours
(its k1 + 1 nearest that also have it among their k1 + 1 nearest), expanded by the half-size
(round(k1 / 2) + 1) reciprocal sets of its members that share more than two thirds of their
members with it; Gaussian weights exp(-d) of the expanded set, normalised to sum 1; local query
expansion over the k2 nearest; Jaccard distance of those encodings; final distance
(1 - lambda) * jaccard + lambda * original. Neighbours are ordered by distance, exact ties by
index (`np.argsort(kind='stable')`; the authors' `np.argsort` leaves the order of exact ties to
numpy's sorting algorithm, which differs between numpy versions and CPUs). Where their code keeps
the encodings and the Jaccard distances in float16, this keeps float32.

Instead of a loop over images, the neighbour sets and the encodings are sparse matrices
(scipy.sparse), and the Jaccard step forms only the (query, gallery, feature) triples where both
encodings are nonzero (`shared_mass`).
"""
import numpy as np
from scipy import sparse


def euclidean(a, b):
    """(len(a), len(b)) Euclidean distances between the rows of `a` and of `b`."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0))


def nearest(dist, k, rows=1024):
    """(N, min(k, M)) int32: each row's k nearest columns in ascending distance, ties by column index
    (the order of `np.argsort(dist, kind='stable')`), without sorting whole rows; `rows` at a time."""
    if dist.shape[0] > rows:
        return np.concatenate([nearest(dist[i:i + rows], k, rows) for i in range(0, dist.shape[0], rows)])
    n, m = dist.shape
    k = min(k, m)
    if k == m:
        return np.argsort(dist, axis=1, kind='stable').astype(np.int32)
    part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(dist, part, axis=1).max(axis=1, keepdims=True)   # the k-th smallest value
    below = dist < kth
    tied = dist == kth
    wanted = k - below.sum(axis=1, keepdims=True)
    columns = np.sort(part, axis=1)                  # the k columns, in ascending column order
    crowded = np.nonzero(tied.sum(axis=1) > wanted[:, 0])[0]   # more ties at the k-th value than places left
    if len(crowded):   # there, everything below the k-th value and of the values equal to it the lowest columns
        chosen = below[crowded] | (tied[crowded] & (np.cumsum(tied[crowded], axis=1) <= wanted[crowded]))
        columns[crowded] = np.nonzero(chosen)[1].reshape(len(crowded), k)
    order = np.argsort(np.take_along_axis(dist, columns, axis=1), axis=1, kind='stable')
    return np.take_along_axis(columns, order, axis=1).astype(np.int32)


def reciprocal_sets(rank, k):
    """Sparse boolean (N, N): entry (i, j) set when j is among i's k + 1 nearest and i among j's."""
    n = rank.shape[0]
    width = min(k + 1, n)   # a k larger than the set: every image
    near = sparse.csr_matrix((np.ones(n * width, dtype=bool), rank[:, :width].ravel(),
                              np.arange(0, n * width + 1, width)), shape=(n, n))
    return near.multiply(near.T).tocsr()


def expanded_sets(rank, k1):
    """Each image's k-reciprocal set, joined by the half-size reciprocal set of every member that
    shares more than two thirds of its members with it (the candidate's own set size)."""
    full = reciprocal_sets(rank, k1).astype(np.float32)
    half = reciprocal_sets(rank, int(np.around(k1 / 2))).astype(np.float32)
    # (i, c): |R(i) ∩ R_half(c)|, kept for the candidates c that are members of R(i)
    shared = (full @ half.T).multiply(full).tocoo()
    sizes = np.asarray(half.sum(axis=1)).ravel()     # |R_half(c)|
    keep = shared.data > 2 / 3 * sizes[shared.col]
    chosen = sparse.csr_matrix((np.ones(keep.sum(), dtype=np.float32), (shared.row[keep], shared.col[keep])),
                               shape=full.shape)
    return ((full + chosen @ half) > 0).tocsr()


def shared_mass(query, gallery, block=1 << 22):
    """(num_query, num_gallery) float32: sum over features f of min(query[i, f], gallery[j, f]), the
    numerator of the Jaccard similarity of two encodings. Only features both hold contribute, so
    the pairs are formed feature by feature (each query holder of f with each gallery holder of f),
    `block` pairs at a time, and summed with np.bincount."""
    query, gallery = query.tocsc(), gallery.tocsc()
    num_q, num_g = query.shape[0], gallery.shape[0]
    q_count, g_count = np.diff(query.indptr), np.diff(gallery.indptr)
    feature_of_entry = np.repeat(np.arange(query.shape[1]), q_count)     # the feature of each query entry
    pairs_of_entry = g_count[feature_of_entry]                           # gallery holders it meets
    total = np.zeros(num_q * num_g, dtype=np.float64)
    ends = np.cumsum(pairs_of_entry)
    first = 0
    while first < len(pairs_of_entry):
        last = int(np.searchsorted(ends, ends[first] - pairs_of_entry[first] + block, side='right'))
        last = max(last, first + 1)
        reps = pairs_of_entry[first:last]
        entry = np.repeat(np.arange(first, last), reps)                   # query entry of each pair
        offset = np.arange(len(entry)) - np.repeat(np.cumsum(reps) - reps, reps)
        other = gallery.indptr[feature_of_entry[entry]] + offset          # gallery entry of each pair
        mass = np.minimum(query.data[entry], gallery.data[other])
        total += np.bincount(query.indices[entry] * num_g + gallery.indices[other], weights=mass,
                             minlength=num_q * num_g)
        first = last
    return total.reshape(num_q, num_g).astype(np.float32)


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The re-ranked (num_query, num_gallery) distance from Euclidean distances query-gallery,
    query-query and gallery-gallery."""
    q_g_dist, q_q_dist, g_g_dist = (np.asarray(d) for d in (q_g_dist, q_q_dist, g_g_dist))
    num_q, num_g = q_g_dist.shape
    if q_q_dist.shape != (num_q, num_q) or g_g_dist.shape != (num_g, num_g):
        raise ValueError(f'distance shapes do not agree: query-gallery {q_g_dist.shape}, query-query '
                         f'{q_q_dist.shape}, gallery-gallery {g_g_dist.shape}')
    if k1 < 1 or k2 < 1 or not 0 <= lambda_value <= 1:
        raise ValueError(f'expected k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1, got {k1}, {k2}, {lambda_value}')
    n = num_q + num_g
    original = np.empty((n, n), dtype=np.float32)    # [[query-query, query-gallery], [gallery-query, gallery-gallery]]
    original[:num_q, :num_q], original[:num_q, num_q:] = q_q_dist, q_g_dist
    original[num_q:, :num_q], original[num_q:, num_q:] = q_g_dist.T, g_g_dist
    np.square(original, out=original)
    original /= original.max(axis=0)                 # each column by its maximum, then transposed
    original = np.ascontiguousarray(original.T)
    rank = nearest(original, max(k1 + 1, k2))

    members = expanded_sets(rank, k1).tocoo()
    weights = np.exp(-original[members.row, members.col])
    encoding = sparse.csr_matrix((weights, (members.row, members.col)), shape=original.shape)
    totals = np.asarray(encoding.sum(axis=1)).ravel()
    encoding = sparse.diags(1 / totals).astype(np.float32) @ encoding
    if k2 != 1:   # local query expansion: the mean encoding of the k2 nearest
        n = original.shape[0]
        width = min(k2, n)
        neighbours = sparse.csr_matrix((np.full(n * width, 1 / width, dtype=np.float32), rank[:, :width].ravel(),
                                     np.arange(0, n * width + 1, width)), shape=original.shape)
        encoding = (neighbours @ encoding).tocsr()

    overlap = shared_mass(encoding[:num_q], encoding[num_q:])
    jaccard = 1 - overlap / (2 - overlap)
    return jaccard * (1 - lambda_value) + original[:num_q, num_q:] * lambda_value
