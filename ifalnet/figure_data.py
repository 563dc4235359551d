"""What the figures show, computed from the files the other scripts write or from a checkpoint's
network (visualize.py draws them with image_grids.py and plots.py): the network inputs and middle-
modality images of some images, a trial's ranked lists as the metric ranks them, t-SNE points, the
cross-modal distances, the CMC curves of results files, and the images of a gallery folder.
"""
import os

import numpy as np
import torch
from PIL import Image

from data_loader import test_transform
from data_manager import DATASETS, dataset_info
from ifalnet.image_grids import load_tile
from ifalnet.plots import optional
from ifalnet.results_file import load_json
from ifalnet.scoring import ORIGINAL_SCORES, SCORES, has_middle, score_similarities
from model import Modal
from utils import ReIDError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def network_inputs(paths, img_h, img_w, device):
    """The images resized as test.py resizes them (PIL images of (img_w, img_h)) and the batch the
    network gets from them, (n, 3, H, W) on `device`."""
    inputs = [load_tile(path, (img_w, img_h)) for path in paths]
    transform = test_transform()
    return inputs, torch.stack([transform(img) for img in inputs]).to(device)


def middle_images(net, paths, modal, img_h, img_w, device):
    """The network inputs (resized as test.py resizes them) and the middle-modality image the
    generator makes from each, min-max scaled per image to 0..255; PIL images of (img_w, img_h)."""
    inputs, x = network_inputs(paths, img_h, img_w, device)              # x: (n, 3, H, W)
    net.eval()
    with torch.no_grad():
        middle, _ = net.middle_modality(x, x, modal)                      # (n, 3, H, W)
    outputs = []
    for m in middle.float().cpu():
        low, high = m.min(), m.max()
        scaled = (m - low) / (high - low) if high > low else torch.zeros_like(m)
        outputs.append(Image.fromarray((scaled.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)))
    return inputs, outputs


def check_score(score, middle=True):
    """Refuse a --score that is not one of the release's six, or (`middle=False`) not one of the two
    a network without the middle modality has."""
    if score not in SCORES:
        raise ReIDError(f'--score {score!r} is not one of {", ".join(SCORES)}')
    if not middle and score not in ORIGINAL_SCORES:
        raise ReIDError(f'--score {score}: the network has no middle modality (trained with --no-middle), so its only '
                        f'scores are {", ".join(ORIGINAL_SCORES)}')


def trial_similarities(feats, trial, score, query_positions=None):
    """`score`'s similarities (queries x gallery) of a trial, as test.py computes them. The whole
    matrix is computed, then rows picked: a product of fewer rows may round differently, and the
    ranking must be the one the metric saw."""
    q_rows, g_rows = feats.side(trial, 'query'), feats.side(trial, 'gallery')
    sims = score_similarities(feats.rows(q_rows), feats.rows(g_rows), feats.meta['llcm_pool_quirk'])[score]
    return sims if query_positions is None else sims[query_positions]


def ranked_lists(feats, trial, score, query_positions):
    """For each chosen query (positions in the trial's query list): the gallery positions it sees,
    in the metric's order (np.argsort of the distance, as the release ranks; then the dataset's
    removals), and the similarity row."""
    sims = trial_similarities(feats, trial, score, query_positions)
    order = np.argsort(-sims, axis=1)
    q_rows, g_rows = feats.side(trial, 'query')[query_positions], feats.side(trial, 'gallery')
    removal = dataset_info(feats.dataset).removal
    lists = []
    for i, q in enumerate(q_rows):
        ranked = order[i]
        if removal is not None:
            g = g_rows[ranked]
            same_id = feats.identity[g] == feats.identity[q]
            ranked = ranked[~removal(same_id, feats.camera[q], feats.camera[g])]
        lists.append(ranked)
    return lists, sims


def choose_queries(feats, trial, count, query_path, data_root):
    """Positions in the trial's query list: the one image `query_path`, or `count` spread evenly."""
    rows = feats.side(trial, 'query')
    if query_path is None:
        return np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(np.int64))
    root = data_root or feats.meta['data_root']
    wanted = {os.path.normpath(query_path), os.path.normpath(os.path.relpath(os.path.abspath(query_path), root))}
    found = [i for i, r in enumerate(rows) if os.path.normpath(str(feats.path[r])) in wanted]
    if not found:
        raise ReIDError(f'--query {query_path} is not among the {len(rows)} queries of trial {trial} in '
                        f'{feats.source} (paths are relative to {root}, e.g. {feats.path[rows[0]]})')
    return np.array(found[:1], dtype=np.int64)


def trial_rows(feats, trial):
    return np.unique(np.concatenate([feats.side(trial, 'query'), feats.side(trial, 'gallery')]))


def tsne_points(feats, trial, num_ids, kind, seed):
    """t-SNE of the original and middle `kind` features of `num_ids` identities (the first, in
    sorted order, with images of both modalities in the trial). Returns (xy (n, 2), identity (n,),
    group (n,)), group indexing TSNE_GROUPS; every image gives one point per branch."""
    manifold = optional('sklearn.manifold', 'tsne')
    if num_ids < 1:
        raise ReIDError(f'--ids must be at least 1, got {num_ids}')
    rows = trial_rows(feats, trial)
    both = np.intersect1d(feats.identity[rows[feats.modality[rows] == Modal.VISIBLE]],
                          feats.identity[rows[feats.modality[rows] == Modal.THERMAL]])
    if len(both) == 0:
        raise ReIDError(f'no identity of trial {trial} in {feats.source} has images of both modalities')
    chosen = both[:num_ids]
    rows = rows[np.isin(feats.identity[rows], chosen)]
    # Without the middle modality (a --no-middle network) the original branch alone.
    branches = ('ori', 'mid') if has_middle(feats.names) else ('ori',)
    x = np.concatenate([feats.arrays[f'{kind}_{b}'][rows] for b in branches]).astype(np.float64)
    thermal = (feats.modality[rows] == Modal.THERMAL).astype(np.int64) * 2
    group = np.concatenate([thermal, thermal + 1][:len(branches)])   # 0 visible, 1 visible middle, 2, 3
    identity = np.concatenate([feats.identity[rows]] * len(branches))
    perplexity = max(1.0, min(30.0, (len(x) - 1) / 3))
    print(f't-SNE of {len(x)} points ({len(chosen)} identities, {len(rows)} images x {len(branches)} '
          f'branch{"es" if len(branches) > 1 else ""})', flush=True)
    tsne = manifold.TSNE(n_components=2, perplexity=perplexity, init='pca', random_state=seed)
    return tsne.fit_transform(x), identity, group


def cross_modal_distances(feats, trial, kind):
    """Cosine distances between the trial's visible and second-modality images, for the original
    and the middle branch (the original alone for a network without the middle modality): {branch: (intra-identity distances, inter-identity distances)}."""
    rows = trial_rows(feats, trial)
    vis, ir = rows[feats.modality[rows] == Modal.VISIBLE], rows[feats.modality[rows] == Modal.THERMAL]
    if len(vis) == 0 or len(ir) == 0:
        raise ReIDError(f'trial {trial} of {feats.source} does not have images of both modalities')
    same = feats.identity[vis][:, None] == feats.identity[ir][None, :]
    out = {}
    for branch in ('ori', 'mid') if has_middle(feats.names) else ('ori',):
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
        values = feats.arrays[f'{kind}_{branch}']
        dist = 1 - unit(values[vis].astype(np.float64)) @ unit(values[ir].astype(np.float64)).T
        out[branch] = (dist[same], dist[~same])
    return out


def read_cmc(path, score):
    """(mean CMC curve, mean Rank-1, mean mAP) of `score` from a results file of test.py."""
    report = load_json(path)
    if not isinstance(report, dict) or not isinstance(report.get('cmc'), dict) or 'mean' not in report:
        raise ReIDError(f'{path} has no "cmc" curves: expected a results file written by test.py --results '
                        '(run test.py again to get the curves)')
    if score not in report['cmc']['mean']:
        raise ReIDError(f'{path} has no score {score!r}; it has {", ".join(report["cmc"]["mean"])}')
    return (np.asarray(report['cmc']['mean'][score]), report['mean'][score]['rank1'], report['mean'][score]['mAP'],
            results_protocol(report))


def results_protocol(report):
    """'SYSU-MM01 all-search, infrared -> visible' from a results file (older files: what they say)."""
    known = DATASETS.get(report.get('dataset'))
    name = known.name if known else str(report.get('dataset', 'unknown dataset'))
    if known and known.modes and report.get('mode'):
        name += f' {report["mode"]}-search'
    return f'{name}, {report["direction"]}' if report.get('direction') else name


def list_gallery(folder):
    if not os.path.isdir(folder):
        raise ReIDError(f'--gallery {folder} is not a folder')
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise ReIDError(f'--gallery {folder} holds no images ({", ".join(IMAGE_SUFFIXES)})')
    return paths
