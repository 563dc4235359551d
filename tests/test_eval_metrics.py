"""Metrics: the release's golden numbers, hand-worked cases, and the vectorised version against
the per-query loop of reference_metrics.py on many random cases (ties included)."""
import functools
import os

import numpy as np
import pytest

import eval_metrics
from eval_metrics import GalleryLayout, eval_llcm, eval_regdb, eval_sysu
from ifalnet.slow_metrics import reference_llcm, reference_regdb, reference_sysu
from utils import ReIDError

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden', 'eval.npz')
FAST = {'sysu': eval_sysu, 'llcm': eval_llcm, 'regdb': eval_regdb}
LOOP = {'sysu': reference_sysu, 'llcm': reference_llcm, 'regdb': reference_regdb}


def golden_args(golden, name):
    args = [golden[f'{name}_{key}'] for key in ('dist', 'q_ids', 'g_ids')]
    if name != 'regdb':
        args += [golden[f'{name}_q_cams'], golden[f'{name}_g_cams']]
    return args


def assert_same(got, expected, map_rtol):
    """CMC (float32) and mINP identical; mAP within `map_rtol` (0 = identical)."""
    cmc, m_ap, m_inp = got
    assert cmc.dtype == np.float32 and cmc.shape == expected[0].shape
    np.testing.assert_array_equal(cmc, expected[0])
    np.testing.assert_allclose(m_ap, expected[1], rtol=map_rtol, atol=0)
    assert m_inp == expected[2]


@pytest.mark.parametrize('name', ['sysu', 'llcm', 'regdb'])
@pytest.mark.parametrize('impl', [FAST, LOOP], ids=['vectorised', 'loop'])
def test_release_golden_cases(name, impl):
    golden = np.load(GOLDEN)
    expected = (golden[f'{name}_cmc'], golden[f'{name}_map'], golden[f'{name}_minp'])
    # The loop sums the precisions exactly as the release; the vectorised version in rank order.
    assert_same(impl[name](*golden_args(golden, name)), expected, 0 if impl is LOOP else 1e-12)


def test_regdb_by_hand():
    # Query identity 1 at ranks 2 and 4: AP = (1/2 + 2/4) / 2, mINP = 2 / 4.
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    cmc, m_ap, m_inp = eval_regdb(dist, np.array([1]), np.array([2, 1, 3, 1, 2]), max_rank=3)
    np.testing.assert_array_equal(cmc, np.array([0, 1, 1], dtype=np.float32))
    assert m_ap == 0.5 and m_inp == 0.5


def test_sysu_by_hand_dedup_removal_and_padding():
    # Gallery in distance order: ids 2, 2, 1(cam 2), 3, 1(cam 1). A camera-3 query does not see
    # camera 2; its deduplicated list is 2, 3, 1 (3 identities, max_rank 5 -> carried forward).
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5],    # query camera 3
                     [0.1, 0.2, 0.3, 0.4, 0.5]])   # query camera 6 sees everything
    g_pids, g_cams = np.array([2, 2, 1, 3, 1]), np.array([1, 4, 2, 5, 1])
    q_pids, q_cams = np.array([1, 1]), np.array([3, 6])
    cmc, m_ap, m_inp = eval_sysu(dist, q_pids, g_pids, q_cams, g_cams)
    # query 1: kept list 2, 2, 3, 1 -> match at rank 4, dedup position 3 (0-based 2)
    # query 2: list 2, 2, 1, 3, 1 -> matches at ranks 3 and 5, dedup position 2 (0-based 1)
    np.testing.assert_array_equal(cmc, np.array([0, 0.5, 1, 1, 1], dtype=np.float32))
    assert m_ap == pytest.approx(((1 / 4) + (1 / 3 + 2 / 5) / 2) / 2, rel=1e-15)
    assert m_inp == (1 / 4 + 2 / 5) / 2


def test_llcm_by_hand_same_identity_same_camera_removed():
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = np.array([1, 2, 1, 3]), np.array([5, 5, 4, 5])
    # The camera-5 query loses the first item (its identity, its camera); not the others.
    cmc, m_ap, m_inp = eval_llcm(dist, np.array([1]), g_pids, np.array([5]), g_cams, max_rank=3)
    np.testing.assert_array_equal(cmc, np.array([0, 1, 1], dtype=np.float32))
    assert m_ap == 0.5 and m_inp == 0.5


def test_queries_without_match_are_left_out_but_divide_nothing():
    dist = np.array([[0.1, 0.2], [0.2, 0.1]])
    cmc, m_ap, m_inp = eval_regdb(dist, np.array([7, 1]), np.array([1, 2]))
    np.testing.assert_array_equal(cmc, np.array([0, 1], dtype=np.float32))  # 1 valid query
    assert m_ap == 0.5 and m_inp == 0.5


def test_no_valid_query_is_an_error():
    with pytest.raises(ReIDError, match='no query has a true match'):
        eval_regdb(np.zeros((2, 3)), np.array([5, 6]), np.array([1, 2, 3]))


@pytest.mark.parametrize('call,message', [
    (lambda: eval_regdb(np.zeros(3), np.array([1]), np.array([1, 2, 3])), '2-D'),
    (lambda: eval_regdb(np.zeros((2, 3)), np.array([1]), np.array([1, 2, 3])), 'q_pids'),
    (lambda: eval_sysu(np.zeros((1, 3)), [1], [1, 2, 3], [3], [1, 2]), 'g_camids'),
])
def test_bad_shapes_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def random_case(rng, kind):
    num_q, num_g = rng.integers(1, 40), rng.integers(1, 60)
    num_ids = rng.integers(1, 12)
    g_pids = rng.integers(0, num_ids, num_g)
    q_pids = rng.integers(0, num_ids + 2, num_q)  # some identities absent from the gallery
    q_cams, g_cams = rng.choice([1, 2, 3, 6], num_q), rng.integers(1, 6, num_g)
    if kind == 'ties':  # few distinct values: the release's argsort decides many orders
        dist = rng.integers(0, 4, (num_q, num_g)).astype(np.float64)
    elif kind == 'float32 ties':  # distinct in float64, equal once rounded to float32
        shape = (num_q, num_g)
        dist = 1 + rng.integers(0, 3, shape) * 1e-3 + rng.integers(0, 2, shape) * 1e-12
    elif kind == 'non-finite':
        dist = rng.standard_normal((num_q, num_g))
        dist[rng.random((num_q, num_g)) < 0.1] = rng.choice([np.inf, -np.inf, np.nan, 1e39])
    else:
        dist = rng.standard_normal((num_q, num_g))
    return dist, q_pids, g_pids, q_cams, g_cams, int(rng.integers(1, 30))


def compare(name, dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    args = (dist, q_pids, g_pids) + ((q_cams, g_cams) if name != 'regdb' else ()) + (max_rank,)
    try:
        expected = LOOP[name](*args)
    except AssertionError:  # the loop's (and release's) "no valid query"
        with pytest.raises(ReIDError):
            FAST[name](*args)
        return False
    assert_same(FAST[name](*args), expected, 1e-12)
    return True


@pytest.mark.parametrize('kind', ['plain', 'ties', 'float32 ties', 'non-finite'])
@pytest.mark.parametrize('name', ['sysu', 'llcm', 'regdb'])
def test_vectorised_equals_loop_on_random_cases(name, kind):
    rng = np.random.default_rng([len(name), len(kind), ord(name[0]), ord(kind[0])])
    evaluated = sum(compare(name, *random_case(rng, kind)) for _ in range(60))
    assert evaluated > 30  # most cases have a valid query


def test_vectorised_equals_loop_across_blocks_threads_and_redone_rows(monkeypatch):
    """Many small row blocks on two threads, with about half of the rows redone for ties."""
    rng = np.random.default_rng(5)
    dist = rng.standard_normal((300, 80))
    dist[::2] = np.round(dist[::2])  # ties in every other row
    g_pids, g_cams = rng.integers(0, 20, 80), rng.integers(1, 6, 80)
    q_pids, q_cams = rng.integers(0, 20, 300), rng.choice([1, 3, 6], 300)
    counts = functools.partial(eval_metrics.all_query_counts, block_elements=1000, workers=2)
    monkeypatch.setattr(eval_metrics, 'all_query_counts', counts)
    for name in ('sysu', 'llcm', 'regdb'):
        assert compare(name, dist, q_pids, g_pids, q_cams, g_cams, 20)


def test_sysu_camera_3_queries_whose_matches_are_all_in_camera_2():
    dist = np.array([[0.3, 0.1, 0.2], [0.3, 0.1, 0.2]])
    g_pids, g_cams = np.array([1, 2, 1]), np.array([2, 1, 2])
    q_pids, q_cams = np.array([1, 1]), np.array([3, 6])
    cmc, m_ap, m_inp = eval_sysu(dist, q_pids, g_pids, q_cams, g_cams)
    # Only the camera-6 query counts: matches at ranks 2 and 3, identity 1 second.
    np.testing.assert_array_equal(cmc, np.array([0, 1, 1], dtype=np.float32))
    assert m_ap == pytest.approx((1 / 2 + 2 / 3) / 2, rel=1e-15) and m_inp == 2 / 3
    assert compare('sysu', dist, q_pids, g_pids, q_cams, g_cams, 20)


def test_all_distances_equal_follow_the_release_argsort():
    dist = np.zeros((6, 25))
    g_pids = np.arange(25) % 5
    q_pids = np.arange(6) % 5
    order = np.argsort(dist, axis=1)
    first_match = [np.flatnonzero(g_pids[order[q]] == q_pids[q])[0] for q in range(6)]
    cmc, _, _ = eval_regdb(dist, q_pids, g_pids, max_rank=25)
    expected = np.array([(np.array(first_match) <= r).sum() for r in range(25)]) / 6
    np.testing.assert_array_equal(cmc, expected.astype(np.float32))
    assert compare('regdb', dist, q_pids, g_pids, None, None, 20)


def test_gallery_layout_minima_are_per_identity_minima():
    rng = np.random.default_rng(2)
    g_pids = rng.integers(0, 7, 30)
    layout = GalleryLayout(g_pids, None)
    block = rng.standard_normal((4, 30)).astype(np.float32)
    work = block[:, layout.perm]  # the scratch column repeats column 0; minima ignore it
    minima = layout.identity_minima(work)
    expected = np.stack([block[:, g_pids == pid].min(1) for pid in layout.ids], axis=1)
    np.testing.assert_array_equal(minima, expected)
    q_index = layout.identity_index(np.array([layout.ids[2], 99]))
    assert q_index.tolist() == [2, -1]
