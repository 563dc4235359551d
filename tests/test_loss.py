"""Losses against the release's golden values and gradients, and against slow loop references."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loss import OriTripletLoss, TcaLoss, identity_blocks, total_loss

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden', 'loss.npz')


@pytest.fixture(scope='module')
def golden():
    return np.load(GOLDEN)


def one_ulp(reference):
    """Absolute tolerance of one float32 ulp at the largest magnitude of `reference`.

    Float32 results that differ only in the accumulation order of sums (BLAS kernels, autograd
    accumulation) land within this; any real difference in the formula does not.
    """
    return float(np.spacing(np.float32(np.abs(reference).max())))


def value_and_grad(fn, feat):
    x = torch.as_tensor(feat).clone().requires_grad_()
    out = fn(x)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return out, x.grad.numpy()


def test_tca_matches_release_value_and_gradient(golden):
    labels = torch.as_tensor(golden['labels'])
    loss, grad = value_and_grad(lambda x: TcaLoss(margin=0.7)(x, labels), golden['feat'])
    np.testing.assert_allclose(loss.item(), golden['tca'], rtol=0, atol=one_ulp(golden['tca']))
    np.testing.assert_allclose(grad, golden['tca_grad'], rtol=0, atol=one_ulp(golden['tca_grad']))


def test_triplet_matches_release_value_count_and_gradient(golden):
    labels = torch.as_tensor(golden['labels'])
    n = len(labels) // 4
    pair = torch.cat([labels[:n], labels[2 * n:3 * n]])

    def visible_thermal(x):
        return OriTripletLoss(2 * n, margin=0.3)(torch.cat([x[:n], x[2 * n:3 * n]]), pair)

    (loss, correct), grad = value_and_grad(visible_thermal, golden['feat'])
    np.testing.assert_allclose(loss.item(), golden['tri'], rtol=0, atol=one_ulp(golden['tri']))
    assert correct == int(golden['tri_correct'])
    np.testing.assert_allclose(grad, golden['tri_grad'], rtol=0, atol=one_ulp(golden['tri_grad']))
    assert not grad[n:2 * n].any() and not grad[3 * n:].any()


def loop_triplet(x, y, margin):
    """Batch-hard triplet written anchor by anchor."""
    terms, correct = [], 0
    for i in range(len(x)):
        d = torch.sqrt(((x - x[i]) ** 2).sum(1).clamp(min=1e-12))
        d_ap, d_an = d[y == y[i]].max(), d[y != y[i]].min()
        terms.append(torch.clamp(margin - (d_an - d_ap), min=0))
        correct += int(d_an >= d_ap)
    return torch.stack(terms).mean(), correct


def test_triplet_matches_loop_reference():
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (20,), generator=gen)
    # Loose clusters, so that some anchors are already correct and others are not.
    x = torch.randn(4, 8, generator=gen, dtype=torch.float64)[y] + 0.7 * torch.randn(
        20, 8, generator=gen, dtype=torch.float64)
    (loss, correct), grad = value_and_grad(lambda t: OriTripletLoss(margin=0.3)(t, y), x)
    (ref, ref_correct), ref_grad = value_and_grad(lambda t: loop_triplet(t, y, 0.3), x)
    assert 0 < correct < len(x)  # both branches of the count are exercised
    assert correct == ref_correct
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)


def loop_tca(x, labels, margin):
    """TCA written identity by identity and sample by sample, straight from its definition (the paper, the release)."""
    f = x.chunk(4)
    pair = {(a, b): (f[a] + f[b]) / 2 for a in range(4) for b in range(a + 1, 4)}
    stream_labels = labels[:len(f[0])]
    positive = 0
    for k in torch.unique(stream_labels):
        c = {ab: p[stream_labels == k].mean(0) for ab, p in pair.items()}
        dists = [torch.linalg.norm(c[(0, 2)] - c[(1, 3)]), torch.linalg.norm(c[(0, 1)] - c[(2, 3)]),
                 torch.linalg.norm(c[(0, 3)] - c[(1, 2)])]
        positive = positive + torch.stack(dists).max()
    per_sample = []
    for i in range(len(x)):
        hinges = []
        for j in range(len(x)):
            if labels[j] != labels[i]:
                centre = x[labels == labels[j]].mean(0)
                d = torch.sqrt(((x[i] - centre) ** 2).sum().clamp(min=1e-12))
                hinges.append(torch.clamp(margin - d, min=0))
        per_sample.append(torch.stack(hinges).mean())
    return positive / 4, torch.stack(per_sample).mean()


def four_stream_labels(ids, num_pos):
    stream = torch.as_tensor(ids).repeat_interleave(num_pos)
    return stream.repeat(4)


@pytest.mark.parametrize('ids,num_pos', [([3, 0, 5], 2), ([1, 4], 3)])
def test_tca_matches_loop_reference_with_active_hinge(ids, num_pos):
    labels = four_stream_labels(ids, num_pos)
    gen = torch.Generator().manual_seed(len(ids))
    # Small norms put the other identities' centres well inside the margin.
    x = 0.2 * torch.randn(len(labels), 6, generator=gen, dtype=torch.float64)
    loss, grad = value_and_grad(lambda t: TcaLoss(margin=0.7)(t, labels), x)
    neg, neg_grad = value_and_grad(lambda t: loop_tca(t, labels, 0.7)[1], x)
    assert neg.item() > 0.2  # the hinge is active
    ref, ref_grad = value_and_grad(lambda t: sum(loop_tca(t, labels, 0.7)), x)
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
    ids_, _ = identity_blocks(labels)
    neg_only, neg_only_grad = value_and_grad(
        lambda t: TcaLoss(margin=0.7).negative(t, labels, ids_, num_pos), x)
    np.testing.assert_allclose(neg_only.item(), neg.item(), rtol=1e-12)
    np.testing.assert_allclose(neg_only_grad, neg_grad, rtol=1e-9, atol=1e-12)


def test_identity_blocks_reads_num_pos():
    ids, num_pos = identity_blocks(four_stream_labels([7, 2, 9], 4))
    assert num_pos == 4 and ids.tolist() == [7, 2, 9]


@pytest.mark.parametrize('labels,message', [
    (torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1]), 'equal streams'),
    (torch.tensor([0, 0, 1, 1] * 3 + [1, 1, 0, 0]), 'same label sequence'),
    (torch.tensor([0, 0, 1] * 4), 'not a multiple'),
    (torch.tensor([0, 0, 1, 0] * 4), 'contiguous blocks'),
    (torch.tensor([0, 0, 1, 1, 0, 0] * 4), 'exactly one block'),
])
def test_tca_rejects_bad_layouts(labels, message):
    with pytest.raises(ValueError, match=message):
        TcaLoss()(torch.zeros(len(labels), 3), labels)


def test_total_loss_composes_the_terms():
    gen = torch.Generator().manual_seed(3)
    labels_v = torch.tensor([4, 4, 1, 1, 6, 6])
    labels_t = labels_v.clone()
    feat = torch.randn(24, 8, generator=gen)
    logits = torch.randn(24, 10, generator=gen)
    triplet, tca = OriTripletLoss(12, margin=0.3), TcaLoss(margin=0.7)
    total, parts = total_loss(feat, logits, labels_v, labels_t, triplet, tca, lambda_1=0.5)

    v, v_mid, t, t_mid = feat.chunk(4)
    pair_labels = torch.cat([labels_v, labels_t])
    pairs = [(v, t), (v, t_mid), (v_mid, t), (v_mid, t_mid)]
    tri = [triplet(torch.cat(p), pair_labels) for p in pairs]
    labels = torch.cat([labels_v, labels_v, labels_t, labels_t])
    expected_id = F.cross_entropy(logits, labels)
    expected_tri = (tri[0][0] + tri[1][0] + tri[2][0] + tri[3][0]) / 4
    expected_tca = tca(feat, labels)
    torch.testing.assert_close(total, expected_id + expected_tri + 0.5 * expected_tca)
    assert parts['id'] == pytest.approx(expected_id.item(), rel=1e-6)
    assert parts['tri'] == pytest.approx(expected_tri.item(), rel=1e-6)
    assert parts['tca'] == pytest.approx(expected_tca.item(), rel=1e-6)
    assert parts['correct'] == tri[0][1]
    assert all(isinstance(parts[k], float) for k in ('id', 'tri', 'tca'))


def test_total_loss_is_float32_and_finite_under_autocast():
    gen = torch.Generator().manual_seed(4)
    labels_v = torch.tensor([0, 0, 3, 3])
    feat = torch.randn(16, 8, generator=gen, requires_grad=True)
    weight = torch.randn(8, 5, generator=gen)
    triplet, tca = OriTripletLoss(margin=0.3), TcaLoss(margin=0.7)

    def run(autocast):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            logits = feat @ weight
            total, parts = total_loss(feat * 1.0, logits, labels_v, labels_v, triplet, tca)
        (grad,) = torch.autograd.grad(total, feat)
        return total, parts, grad

    total, parts, grad = run(autocast=True)
    assert total.dtype == torch.float32 and torch.isfinite(grad).all()
    ref_total, ref_parts, _ = run(autocast=False)
    # only the bfloat16 logits differ; the distance-based terms are float32 in both runs
    assert parts['tri'] == ref_parts['tri'] and parts['tca'] == ref_parts['tca']
    assert abs(parts['id'] - ref_parts['id']) < 0.05
