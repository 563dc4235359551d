"""Losses of IFALNet: batch-hard triplet, tri-modal centre alignment (TCA) and their sum.

The features of one training batch come in four streams of n rows each, in this order:
visible, visible-middle, thermal, thermal-middle (v, v_mid, t, t_mid). Within every stream the
identities are contiguous blocks of `num_pos` rows, in the same order in all four streams. A network
without the middle modality has two streams, visible and thermal (v, t); `total_loss` takes the
component switches of the ablations (streams, triplet pairs, loss weights).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_STREAMS = 4
TRIPLET_PAIRS = ('all', 'original')


@dataclass(frozen=True)
class LossSwitches:
    """The switches of the loss, one record (the defaults are the release's loss): `triplet_pairs`
    (the triplet term over the four stream pairs, 'all', or the visible-infrared originals alone,
    'original'), `id_weight` (the identity term's weight) and `lambda_1` (the TCA weight; 0: no TCA).
    train.py's flags, run names and arguments line read it."""
    triplet_pairs: str = 'all'
    id_weight: float = 1.0
    lambda_1: float = 0.7

    def __post_init__(self):
        if self.triplet_pairs not in TRIPLET_PAIRS:
            raise ValueError(f'pairs: expected one of {", ".join(TRIPLET_PAIRS)}, got {self.triplet_pairs!r}')

    def run_name_part(self):
        """The switches that differ from the release's, as run names spell them: '_pairs_original_id_0.5_lambda_0.0'."""
        default, parts = LossSwitches(), []
        if self.triplet_pairs != default.triplet_pairs:
            parts.append(f'pairs_{self.triplet_pairs}')
        if self.id_weight != default.id_weight:
            parts.append(f'id_{self.id_weight}')
        if self.lambda_1 != default.lambda_1:
            parts.append(f'lambda_{self.lambda_1}')
        return ''.join(f'_{p}' for p in parts)


def clamped_sqrt(squared):
    """The expansion |x|^2 + |y|^2 - 2 x.y can round below zero, hence the clamp before the
    square root; it also keeps the gradient finite where two points coincide."""
    return squared.clamp(min=1e-12).sqrt()


def at_least_float32(x):
    """Half precision -> float32 (in half precision the clamp at 1e-12 below is 0, and the
    square root's gradient on a self-distance diagonal becomes 0/0); float64 stays."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def euclidean_dist(x, y=None):
    """Pairwise Euclidean distances (len(x), len(y)) by the release's expansion; y=None means x.

    The self-distance case reuses |x|^2, as the release does, which keeps the input gradient to
    within one float32 ulp of the release's. Autocast is off: see `at_least_float32`.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = at_least_float32(x)
        x2 = x.pow(2).sum(1, keepdim=True)  # (m, 1)
        if y is None:
            y, y2 = x, x2
        else:
            y = at_least_float32(y)
            y2 = y.pow(2).sum(1, keepdim=True)  # (k, 1)
        return clamped_sqrt(torch.addmm(x2 + y2.t(), x, y.t(), beta=1, alpha=-2))  # (m, k)


def rowwise_dist(a, b):
    """Euclidean distance between matching rows of a and b (m,), by the same expansion."""
    squared = a.pow(2).sum(1) + b.pow(2).sum(1) - 2 * (a * b).sum(1)
    return clamped_sqrt(squared)


class OriTripletLoss(nn.Module):
    """Batch-hard triplet loss: hardest positive and hardest negative per anchor, margin ranking.

    forward(inputs (N, d), targets (N,)) -> (loss, correct), where `correct` is the number of
    anchors whose hardest negative is at least as far as their hardest positive (a python int).
    `batch_size` is accepted only so that the release's call `OriTripletLoss(batch_size, margin)`
    keeps working; the loss does not depend on it.
    """

    def __init__(self, batch_size=None, margin=0.3):
        super().__init__()
        del batch_size  # kept for API compatibility only
        self.ranking_loss = nn.MarginRankingLoss(margin=margin)

    def forward(self, inputs, targets):
        dist = euclidean_dist(inputs)  # (N, N)
        same = targets[:, None] == targets[None, :]  # (N, N)
        dist_ap = dist.masked_fill(~same, float('-inf')).max(1).values  # (N,)
        dist_an = dist.masked_fill(same, float('inf')).min(1).values  # (N,)
        loss = self.ranking_loss(dist_an, dist_ap, torch.ones_like(dist_an))
        correct = int((dist_an >= dist_ap).sum().item())
        return loss, correct


def identity_blocks(labels, num_streams=NUM_STREAMS):
    """Check the four-stream block layout of `labels`; return (block identities (K,), num_pos).

    TCA pairs rows of different streams by position and averages identities over blocks, so a
    batch that is not laid out this way would give a silently wrong loss.
    """
    total = labels.numel()
    if labels.dim() != 1 or total == 0 or total % num_streams:
        raise ValueError(f'TCA expects 1-D labels for {num_streams} equal streams, got shape '
                         f'{tuple(labels.shape)}')
    streams = labels.view(num_streams, -1)
    if not bool((streams == streams[0]).all()):
        raise ValueError('TCA expects the same label sequence in all four streams '
                         '(labels = cat(l, l, l, l) with visible and thermal identities aligned)')
    stream = streams[0]
    change = torch.nonzero(stream[1:] != stream[:-1])
    num_pos = int(change[0, 0]) + 1 if len(change) else len(stream)
    if len(stream) % num_pos:
        raise ValueError(f'TCA expects identity blocks of equal size: {len(stream)} rows per '
                         f'stream is not a multiple of the first block size {num_pos}')
    blocks = stream.view(-1, num_pos)
    if not bool((blocks == blocks[:, :1]).all()):
        raise ValueError(f'TCA expects every identity in contiguous blocks of {num_pos} rows')
    ids = blocks[:, 0]
    if len(torch.unique(ids)) != len(ids):
        raise ValueError('TCA expects each identity in exactly one block per stream')
    return ids, num_pos


class TcaLoss(nn.Module):
    """Tri-modal centre alignment: pull the identity centres of the six stream-pair means together
    and push every sample at least `margin` away from the centres of the other identities.

    forward(feats (4n, d), labels (4n,)) -> scalar loss; see `identity_blocks` for the layout.
    """

    def __init__(self, margin=0.7):
        super().__init__()
        self.margin = margin

    def forward(self, feats, labels):
        ids, num_pos = identity_blocks(labels)
        feats = at_least_float32(feats)
        return self.positive(feats, num_pos) + self.negative(feats, labels, ids, num_pos)

    @staticmethod
    def positive(feats, num_pos):
        f1, f2, f3, f4 = feats.chunk(NUM_STREAMS)  # each (n, d)
        pairs = torch.stack([(f1 + f2) / 2, (f1 + f3) / 2, (f1 + f4) / 2,
                             (f2 + f3) / 2, (f2 + f4) / 2, (f3 + f4) / 2])  # (6, n, d)
        c = pairs.view(6, -1, num_pos, feats.shape[1]).mean(2)  # (6, K, d) identity centres
        # Each distance compares the two pair means that share no stream: (1,3)-(2,4),
        # (1,2)-(3,4) and (1,4)-(2,3).
        dists = torch.stack([rowwise_dist(c[1], c[4]), rowwise_dist(c[0], c[5]),
                             rowwise_dist(c[2], c[3])])  # (3, K)
        return dists.max(0).values.sum() / NUM_STREAMS

    def negative(self, feats, labels, ids, num_pos):
        d = feats.shape[1]
        centres = feats.view(NUM_STREAMS, -1, num_pos, d).mean((0, 2))  # (K, d), block order
        hinge = (self.margin - euclidean_dist(feats, centres)).clamp(min=0)  # (4n, K)
        other = labels[:, None] != ids[None, :]  # (4n, K)
        # Every identity has the same number of samples, so the mean over the other-identity
        # samples j equals the mean over the other identities' centres.
        per_sample = (hinge * other).sum(1) / other.sum(1)  # (4n,)
        return per_sample.mean()


def stream_labels(labels_v, labels_t, middle=True):
    """The labels of the streams in order: [v, v_mid, t, t_mid], or [v, t] without the middle modality."""
    return torch.cat([labels_v, labels_v, labels_t, labels_t] if middle else [labels_v, labels_t])


def stream_pairs(feat, labels_v, labels_t, middle=True, pairs='all'):
    """The (features, labels) pairs of the triplet term, each as cat(feat_a, feat_b) with labels
    cat(labels_v, labels_t): with the middle modality and `pairs='all'` the four (v, t), (v, t_mid),
    (v_mid, t), (v_mid, t_mid); with `pairs='original'` (or without the middle modality, where the
    streams are [v, t]) the visible-infrared originals (v, t) alone."""
    LossSwitches(triplet_pairs=pairs)   # refuses pairs other than TRIPLET_PAIRS
    labels = torch.cat([labels_v, labels_t])
    if not middle:
        v, t = feat.chunk(2)
        return [(torch.cat([v, t]), labels)]
    v, v_mid, t, t_mid = feat.chunk(NUM_STREAMS)
    if pairs == 'original':
        return [(torch.cat([v, t]), labels)]
    return [(torch.cat([a, b]), labels) for a in (v, v_mid) for b in (t, t_mid)]


def total_loss(feat, logits, labels_v, labels_t, triplet, tca, lambda_1=LossSwitches.lambda_1, middle=True,
               pairs=LossSwitches.triplet_pairs, id_weight=LossSwitches.id_weight):
    """id_weight * identity + triplet + lambda_1 * TCA over the streams (v, v_mid, t, t_mid).

    feat (4n, d) and logits (4n, C) in stream order; labels_v, labels_t (n,). `triplet` is an
    OriTripletLoss and `tca` a TcaLoss. Returns (total, parts) where parts holds python floats
    'id', 'tri', 'tca' and 'correct', the triplet's correct-anchor count of the first pair (v, t)
    (out of 2n anchors), which is what the training log reports.

    The switches (defaults: the release's loss): `middle=False`, streams [v, t] (2n rows) of a
    network without the middle modality, where TCA does not exist (`lambda_1` must be 0); `pairs`
    the triplet's stream pairs (see `stream_pairs`); `lambda_1=0` leaves TCA out (not computed,
    reported as 0); `id_weight` scales the identity term (unweighted, the release's sum).
    """
    if not middle and lambda_1:
        raise ValueError('TCA aligns the centres of four streams: a network without the middle modality '
                         f'has two, so lambda_1 must be 0 (got {lambda_1})')
    labels = stream_labels(labels_v, labels_t, middle)
    loss_id = F.cross_entropy(at_least_float32(logits), labels)
    terms = [triplet(x, y) for x, y in stream_pairs(feat, labels_v, labels_t, middle, pairs)]
    loss_tri = sum(loss for loss, _ in terms) / len(terms)
    total = (loss_id if id_weight == 1 else id_weight * loss_id) + loss_tri
    if lambda_1:
        loss_tca = tca(feat, labels)
        total = total + lambda_1 * loss_tca
    parts = {'id': loss_id.item(), 'tri': loss_tri.item(), 'tca': loss_tca.item() if lambda_1 else 0.0,
             'correct': terms[0][1]}
    return total, parts
