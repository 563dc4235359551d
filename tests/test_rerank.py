"""rerank.re_ranking against the slow per-image version of reference_metrics.py, written from the
paper's algorithm (Zhong et al., CVPR 2017, with the conventions of the authors' code), on random
cases with and without ties."""
import numpy as np
import pytest
from scipy import sparse

from eval_metrics import eval_regdb
from ifalnet.rerank import nearest, re_ranking, shared_mass
from ifalnet.slow_metrics import reference_re_ranking as slow_re_ranking


def euclidean(a, b):
    return np.sqrt(np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T, 0))


def random_case(rng, num_q, num_g, dim=8, duplicates=0):
    q, g = rng.standard_normal((num_q, dim)), rng.standard_normal((num_g, dim))
    if duplicates:   # identical images: exact ties in every distance to them
        g[:duplicates] = g[duplicates:2 * duplicates]
        q[:duplicates] = g[:duplicates]
    return euclidean(q, g), euclidean(q, q), euclidean(g, g)


@pytest.mark.parametrize('seed, num_q, num_g, k1, k2, lam, duplicates', [
    (0, 6, 14, 4, 3, 0.3, 0),
    (1, 9, 21, 6, 2, 0.3, 3),     # ties
    (2, 5, 12, 3, 1, 0.5, 0),     # k2 = 1: no query expansion
    (3, 4, 10, 20, 6, 0.3, 0),    # k1 larger than the set: every image is a neighbour
    (4, 7, 15, 5, 4, 0.0, 2),     # Jaccard only
    (5, 8, 18, 2, 2, 1.0, 0),     # original distance only
])
def test_equals_the_slow_version(seed, num_q, num_g, k1, k2, lam, duplicates):
    case = random_case(np.random.default_rng(seed), num_q, num_g, duplicates=duplicates)
    fast = re_ranking(*case, k1=k1, k2=k2, lambda_value=lam)
    slow = slow_re_ranking(*case, k1=k1, k2=k2, lambda_value=lam)
    assert fast.shape == (num_q, num_g) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_a_query_whose_reciprocal_set_is_itself_alone():
    """A query far from everything: no other image has it among its nearest, so its encoding is
    itself alone and its Jaccard distance to every gallery image is 1."""
    rng = np.random.default_rng(7)
    q, g = rng.standard_normal((3, 4)), rng.standard_normal((10, 4))
    q[0] = 100.0
    case = euclidean(q, g), euclidean(q, q), euclidean(g, g)
    fast = re_ranking(*case, k1=3, k2=1, lambda_value=0.0)
    np.testing.assert_allclose(fast, slow_re_ranking(*case, k1=3, k2=1, lambda_value=0.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fast[0], np.ones(10, dtype=np.float32))


def test_re_ranking_demotes_an_impostor_and_raises_rank1():
    """A gallery impostor (identity B) nearer the query than its true match (identity A), but whose
    own nearest neighbours are B images, while the true match has the query among its nearest:
    k-reciprocal neighbours put an A image first, and Rank-1 rises from 1/2 to 1."""
    gallery = np.array([[0.0, 0.2], [2.7, 0.0], [-0.2, 0.0], [0.0, -0.2],                     # A: true match, 2 more
                        [3.0, 0.0], [3.0, 0.2], [2.9, -0.2], [3.1, 0.1], [3.2, 0.0]])         # B: impostor first
    g_ids = np.array([0, 1, 0, 0, 1, 1, 1, 1, 1])
    queries, q_ids = np.array([[1.4, 0.0], [3.05, -0.05]]), np.array([0, 1])
    q_g, q_q, g_g = euclidean(queries, gallery), euclidean(queries, queries), euclidean(gallery, gallery)
    assert np.argmin(q_g[0]) == 1                            # before: the impostor first
    final = re_ranking(q_g, q_q, g_g, k1=3, k2=1, lambda_value=0.3)
    assert g_ids[np.argmin(final[0])] == 0                   # after: identity A first
    np.testing.assert_allclose(final, slow_re_ranking(q_g, q_q, g_g, k1=3, k2=1, lambda_value=0.3),
                               rtol=1e-5, atol=1e-6)
    before, after = (eval_regdb(d, q_ids, g_ids)[0][0] for d in (q_g, final))
    assert (before, after) == (0.5, 1.0)


def test_bad_shapes_and_parameters():
    q_g, q_q, g_g = random_case(np.random.default_rng(0), 3, 5)
    with pytest.raises(ValueError, match='distance shapes do not agree'):
        re_ranking(q_g, g_g, q_q)
    with pytest.raises(ValueError, match='k1 >= 1'):
        re_ranking(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match='lambda_value'):
        re_ranking(q_g, q_q, g_g, lambda_value=1.5)


def test_nearest_is_the_stable_argsort_prefix_ties_included():
    rng = np.random.default_rng(3)
    dist = rng.integers(0, 4, size=(30, 25)).astype(np.float32)   # many exact ties
    for k in (1, 5, 12, 25, 40):
        expected = np.argsort(dist, axis=1, kind='stable')[:, :k]
        np.testing.assert_array_equal(nearest(dist, k), expected)
        np.testing.assert_array_equal(nearest(dist, k, rows=7), expected)   # in blocks of rows


def test_shared_mass_in_blocks_equals_the_dense_sum_of_minima():
    rng = np.random.default_rng(4)
    dense = rng.random((12, 20)).astype(np.float32) * (rng.random((12, 20)) < 0.3)
    query, gallery = sparse.csr_matrix(dense[:5]), sparse.csr_matrix(dense[5:])
    expected = np.minimum(dense[:5, None], dense[None, 5:]).sum(-1)
    for block in (1, 3, 1 << 22):
        np.testing.assert_allclose(shared_mass(query, gallery, block), expected, rtol=1e-6)
