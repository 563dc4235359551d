"""test.py --save-features, the CMC curves of the results file, and every visualize.py subcommand,
on the synthetic datasets of conftest.py with freshly built models (32x16 inputs, CPU)."""
import json
import os
import re
import shutil
import subprocess
import sys
from xml.etree import ElementTree

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits  # installed with scikit-learn (requirements-vis.txt)

import test as test_script
import visualize
from eval_metrics import eval_llcm, eval_regdb, eval_sysu
from ifalnet import attention_maps as attention, environment_stamp
from ifalnet.checkpoints import load_model, save_checkpoint
from ifalnet.feature_bank import FeatureBank
from ifalnet.features_file import FEATURE_NAMES as FEATURES, Features
from ifalnet.figure_data import cross_modal_distances, network_inputs, ranked_lists, results_protocol, tsne_points
from ifalnet.image_grids import (BLUE, BORDER, GAP, GREEN, LINE, MARGIN, MIN_CELL, RED, WHITE, caption_font, draw_grid,
                                 score_key, score_labels)
from ifalnet.plots import cmc_figure, distances_figure, save_figure, tsne_figure
from ifalnet.problems import ImageSet, build_problem
from ifalnet.scoring import RANKS, SCORES, cmc_curve, score_similarities, summarise
from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu
from model import Modal, embed_net
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--img_h', '32', '--img_w', '16', '--workers', '0', '--test-batch', '32', '--gpu', '']
MODEL = ['--img_h', '32', '--img_w', '16', '--gpu', '']
SCORE_KEYS = {'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP'}
M, G, B, LINE = MARGIN, GAP, BORDER, LINE
# Grid cells in the tests: 16x32 tiles framed by the border, centred in a cell of the minimum width.
TILE_W, TILE_H = 16, 32
FRAMED = TILE_W + 2 * B
CELL_W = max(FRAMED, MIN_CELL)
INSET = (CELL_W - FRAMED) // 2


def grid_size(cells, lines, rows=1, key=0):
    """Cells of `lines` caption lines, and `key` lines of explanation under the grid."""
    return (2 * M + cells * CELL_W + (cells - 1) * G,
            2 * M + rows * (TILE_H + 2 * B + lines * LINE) + (rows - 1) * G + key * LINE)


def metric(dataset, distmat, q_ids, g_ids, q_cams, g_cams):
    if dataset == 'regdb':
        return eval_regdb(distmat, q_ids, g_ids)
    return (eval_sysu if dataset == 'sysu' else eval_llcm)(distmat, q_ids, g_ids, q_cams, g_cams)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Two freshly initialised models (RegDB's per-split run uses both; the others the first)."""
    folder = tmp_path_factory.mktemp('vis_models')
    for trial in (1, 3):
        torch.manual_seed(trial)
        save_checkpoint({'net': embed_net(5).state_dict(), 'epoch': -1}, folder / f'init_trial_{trial}.t')
    return folder


# Datasets of our own, smaller than conftest's: every image is embedded by a ResNet-50 on the CPU.
# Roots contain "cam", as in conftest, so only the path below the root is parsed.
@pytest.fixture(scope='module')
def sysu_root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp('camera_sysu_vis'), train_ids=(1,), val_ids=(2,), test_ids=(3, 4, 5),
                     images_per_cam=2, size=(32, 16), missing=('cam2/0004', 'cam6/0005'))


@pytest.fixture(scope='module')
def llcm_root(tmp_path_factory):
    return make_llcm(tmp_path_factory.mktemp('camera_llcm_vis'), train_ids=(1,), test_ids=(2, 3),
                     images_per_cam=1, size=(32, 16), missing=('test_vis/cam3/0003',))


@pytest.fixture(scope='module')
def regdb_root(tmp_path_factory):
    return make_regdb(tmp_path_factory.mktemp('camera_regdb_vis'), num_ids=6, images_per_id=2, size=(32, 16))


def run_test(tmp, dataset, root, resume, trials, *extra):
    results, feats = tmp / f'{dataset}.json', tmp / f'{dataset}.npz'
    test_script.main(['--dataset', dataset, '--data-path', str(root), '--resume', str(resume), '--trials', trials,
                      '--results', str(results), '--save-features', str(feats), *FAST, *extra])
    return json.loads(results.read_text()), feats


@pytest.fixture(scope='module')
def runs(tmp_path_factory, checkpoints, sysu_root, llcm_root, regdb_root):
    """test.py with --save-features on the three datasets: {dataset: (report, features file, root,
    [(problems, bank) of every embedding test.py made])}."""
    tmp = tmp_path_factory.mktemp('vis_runs')
    first = checkpoints / 'init_trial_1.t'
    out, real_embed = {}, test_script.embed
    for dataset, root, resume, trials in (('sysu', sysu_root, first, '0,1'), ('llcm', llcm_root, first, '0,1'),
                                          ('regdb', regdb_root, checkpoints / 'init_trial_{trial}.t', '1,3')):
        embedded = []

        def recording_embed(*args, **kwargs):
            embedded.append(real_embed(*args, **kwargs))
            return embedded[-1]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(test_script, 'embed', recording_embed)
            out[dataset] = (*run_test(tmp, dataset, root, resume, trials), root, embedded)
    return out


# ----------------------------------------------------------------------------- features file
@pytest.mark.parametrize('dataset', ['sysu', 'llcm', 'regdb'])
def test_features_file_describes_every_trial_and_reproduces_the_scores(runs, dataset):
    report, path, root, _ = runs[dataset]
    with np.load(path) as npz:   # plain arrays: no pickle needed
        data = dict(npz)
    meta = json.loads(str(data['meta']))
    assert meta['kind'] == 'ifalnet-features' and meta['dataset'] == dataset
    assert meta['data_root'] == os.path.abspath(root) and (meta['img_h'], meta['img_w']) == (32, 16)
    assert meta['protocol'] == 'release' and meta['tvsearch'] is False and meta['mode'] == 'all'
    assert meta['llcm_pool_quirk'] is (dataset == 'llcm')
    assert meta['trials'] == report['trials']
    n = len(data['path'])
    for name in FEATURES:
        assert data[name].shape == (n, 2048) and data[name].dtype == np.float32
    for trial in meta['trials']:
        problem = build_problem(dataset, str(root), trial)
        q, g = data[f'query_{trial}'], data[f'gallery_{trial}']
        for rows, images in ((q, problem.query), (g, problem.gallery)):
            assert [os.path.join(root, p) for p in data['path'][rows]] == images.paths
            np.testing.assert_array_equal(data['identity'][rows], images.ids)
            np.testing.assert_array_equal(data['camera'][rows], -1 if images.cams is None else images.cams)
            assert (data['modality'][rows] == images.modal).all()
            assert (data['model'][rows] == meta['trial_models'][meta['trials'].index(trial)]).all()
        feats = lambda rows: {k: data[k][rows].astype(np.float64) for k in FEATURES}
        sims = score_similarities(feats(q), feats(g), meta['llcm_pool_quirk'])
        scored = {t['trial']: t for t in report['per_trial']}[trial]
        curves = {t['trial']: t for t in report['cmc']['per_trial']}[trial]
        for name in SCORES:
            cmc, mAP, mINP = metric(dataset, -sims[name], data['identity'][q], data['identity'][g],
                                    data['camera'][q], data['camera'][g])
            assert summarise(cmc, mAP, mINP) == scored[name]
            assert curves[name] == cmc_curve(cmc)


@pytest.mark.parametrize('dataset', ['sysu', 'regdb'])
def test_features_equal_the_embedding_of_test_py(runs, dataset):
    _, path, _, embedded = runs[dataset]
    feats = Features(path)
    assert len(embedded) == len(feats.meta['checkpoints'])   # RegDB: one embedding per split's model
    for problems, bank in embedded:
        for trial, problem in problems.items():
            for side in ('query', 'gallery'):
                expected = bank.get(getattr(problem, side))
                stored = feats.rows(feats.side(trial, side))
                for name in FEATURES:
                    np.testing.assert_array_equal(stored[name], expected[name])
    if dataset == 'sysu':   # an image drawn into both trials' galleries is one row
        assert len(feats.path) == len(set(zip(feats.modality, feats.path)))
        assert len(feats.path) < sum(len(feats.side(t, s)) for t in (0, 1) for s in ('query', 'gallery'))


def test_regdb_per_split_models_keep_their_own_rows(runs):
    report, path, _, _ = runs['regdb']
    feats = Features(path)
    assert feats.meta['trial_models'] == [0, 1] and len(feats.meta['checkpoints']) == 2
    assert (feats.camera == -1).all()
    one, two = (feats.side(t, 'query') for t in (1, 3))  # splits sharing identities 3, 6
    assert set(feats.model[one]) == {0} and set(feats.model[two]) == {1}
    shared = sorted(set(feats.path[one]) & set(feats.path[two]))
    assert shared   # the two splits share images; each model embedded them
    row = lambda rows, p: rows[list(feats.path[rows]).index(p)]
    a, b = row(one, shared[0]), row(two, shared[0])
    assert not np.array_equal(feats.arrays['bn_ori'][a], feats.arrays['bn_ori'][b])


def test_results_file_holds_each_scores_cmc_curve(runs):
    for dataset, (report, _, _, _) in runs.items():
        # "mode" (SYSU-MM01's gallery cameras) is null for RegDB and LLCM; every file says its direction
        assert report['mode'] == ('all' if dataset == 'sysu' else None)
        assert set(report) == {'dataset', 'mode', 'direction', 'tvsearch', 'protocol', 'trials', 'mean', 'per_trial', 'cmc',
                               'std', 'per_camera', 'rerank', 'flip', 'gallery', 'shots', 'trained_on', 'checkpoints',
                               'embedding', 'dataset_copy', 'environment'}
        embedding = report['embedding']   # the clean run's embedding time per image
        assert embedding['images'] > 0 and embedding['seconds_per_image'] == embedding['seconds'] / embedding['images']
        assert all(set(report['mean'][s]) == SCORE_KEYS for s in SCORES)
        assert [t['trial'] for t in report['cmc']['per_trial']] == report['trials']
        for name in SCORES:
            mean = report['cmc']['mean'][name]
            assert len(mean) == 20 and all(a <= b for a, b in zip(mean, mean[1:]))
            for r in RANKS:
                assert mean[r - 1] == report['mean'][name][f'rank{r}']
            for curve, scores in zip(report['cmc']['per_trial'], report['per_trial']):
                assert [curve[name][r - 1] for r in RANKS] == [scores[name][f'rank{r}']
                                                                          for r in RANKS]
    # a gallery under 20 (SYSU here: 11 images) gives a shorter CMC, carried on to rank 20
    curve = runs['sysu'][0]['cmc']['per_trial'][0]['ALL']
    assert len(curve) == 20 and curve[10:] == [curve[10]] * 10
    assert cmc_curve(np.array([0.25, 0.5, 0.75], np.float32)) == [0.25, 0.5] + [0.75] * 18


# ----------------------------------------------------------------------------- ranking
def trial_sims(feats, trial, score='ALL'):
    q_rows, g_rows = feats.side(trial, 'query'), feats.side(trial, 'gallery')
    return score_similarities(feats.rows(q_rows), feats.rows(g_rows), feats.meta['llcm_pool_quirk'])[score]


def own_ranking(feats, dataset, trial, q, sims):
    """The metric's list for query position q, written out: argsort of the distance, then removals."""
    q_rows, g_rows = feats.side(trial, 'query'), feats.side(trial, 'gallery')
    order = np.argsort(-sims, axis=1)[q]
    qid, qcam = feats.identity[q_rows[q]], feats.camera[q_rows[q]]
    gid, gcam = feats.identity[g_rows[order]], feats.camera[g_rows[order]]
    removed = {'sysu': (qcam == 3) & (gcam == 2), 'llcm': (gid == qid) & (gcam == qcam),
               'regdb': np.zeros(len(order), bool)}[dataset]
    return order[~removed]


@pytest.mark.parametrize('dataset', ['sysu', 'llcm', 'regdb'])
def test_ranked_lists_are_the_metrics(runs, dataset):
    """AP, INP and Rank-1 recomputed from the drawn lists equal the metric's, for every query."""
    _, path, _, _ = runs[dataset]
    feats = Features(path)
    trial = feats.trials[1]
    q_rows, g_rows = feats.side(trial, 'query'), feats.side(trial, 'gallery')
    positions = np.arange(len(q_rows))
    for score in ('ALL', 'MIS-IR FC'):
        lists, sims = ranked_lists(feats, trial, score, positions)
        np.testing.assert_array_equal(sims, trial_sims(feats, trial, score))
        aps, inps, firsts = [], [], []
        for q, ranked in zip(positions, lists):
            expected = own_ranking(feats, dataset, trial, q, sims)
            np.testing.assert_array_equal(ranked, expected)
            hits = np.flatnonzero(feats.identity[g_rows[ranked]] == feats.identity[q_rows[q]]) + 1
            if len(hits):
                aps.append(np.mean(np.arange(1, len(hits) + 1) / hits))
                inps.append(len(hits) / hits[-1])
                firsts.append(hits[0] == 1)
        cmc, mAP, mINP = metric(dataset, -sims, feats.identity[q_rows], feats.identity[g_rows],
                                feats.camera[q_rows], feats.camera[g_rows])
        assert np.mean(aps) == pytest.approx(mAP, rel=1e-12) and np.mean(inps) == pytest.approx(mINP, rel=1e-12)
        assert cmc[0] == pytest.approx(np.mean(firsts), rel=1e-6)


def border_colour(image, cell):
    x = M + cell * (CELL_W + G) + INSET
    corners = {image.getpixel((x + 1, M + 1)), image.getpixel((x + FRAMED - 2, M + TILE_H + 2 * B - 2))}
    assert len(corners) == 1
    return corners.pop()


def test_ranking_grids_border_colours_and_size(runs, tmp_path):
    _, path, _, _ = runs['sysu']
    feats = Features(path)
    out = tmp_path / 'ranking'
    visualize.main(['ranking', '--features', str(path), '--trial', '1', '--queries', '6', '--topk', '20',
                    '--height', '32', '--out', str(out)])
    files = sorted(os.listdir(out))
    q_rows = feats.side(1, 'query')
    positions = np.unique(np.linspace(0, len(q_rows) - 1, 6).round().astype(int))
    assert files == [f'trial1_query{p:05d}.png' for p in positions]
    cams, sims = set(), trial_sims(feats, 1)
    for p, name in zip(positions, files):
        expected = own_ranking(feats, 'sysu', 1, p, sims)
        image = Image.open(out / name).convert('RGB')
        n = 1 + len(expected)   # topk covers the whole gallery: cam3 queries have fewer tiles
        assert image.size == grid_size(n, 3, key=3)   # captions: rank and similarity, camera, identity; key
        assert border_colour(image, 0) == BLUE
        g_rows = feats.side(1, 'gallery')
        for k, j in enumerate(expected, start=1):
            match = feats.identity[g_rows[j]] == feats.identity[q_rows[p]]
            assert border_colour(image, k) == (GREEN if match else RED)
        cams.add(feats.camera[q_rows[p]])
    assert cams == {3, 6}   # both the removal rule and its absence were drawn
    # FILE.png: the same grids, one under the other, the key once, under the last
    visualize.main(['ranking', '--features', str(path), '--trial', '1', '--queries', '6', '--topk', '20',
                    '--height', '32', '--out', str(tmp_path / 'all.png')])
    rows = [np.asarray(Image.open(out / name).convert('RGB')) for name in files]
    stacked = np.asarray(Image.open(tmp_path / 'all.png').convert('RGB'))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    keyless = [r.shape[0] - 3 * LINE for r in rows[:-1]]   # each grid but the last without its 3 key lines
    assert stacked.shape == (sum(keyless) + rows[-1].shape[0], width, 3)
    np.testing.assert_array_equal(stacked[-rows[-1].shape[0]:], padded[-1])
    y = 0
    for grid, height in zip(padded, keyless):   # the tiles and captions, down to where the key was
        np.testing.assert_array_equal(stacked[y:y + height - MARGIN], grid[:height - MARGIN])
        assert (stacked[y + height - MARGIN:y + height] == 255).all()   # no key text
        y += height

    one = feats.path[q_rows[4]]
    visualize.main(['ranking', '--features', str(path), '--query', str(one), '--topk', '3', '--height', '32',
                    '--out', str(tmp_path / 'one')])
    image = Image.open(tmp_path / 'one' / 'trial0_query00004.png')
    assert image.size == grid_size(4, 3, key=3)
    with pytest.raises(ReIDError, match='is not among the .* queries of trial 0'):
        visualize.main(['ranking', '--features', str(path), '--query', 'cam1/0003/0001.jpg', '--out', str(tmp_path)])
    with pytest.raises(ReIDError, match='trial 5 is not in'):
        visualize.main(['ranking', '--features', str(path), '--trial', '5', '--out', str(tmp_path)])


# ----------------------------------------------------------------------------- t-SNE, distances, CMC
def test_tsne_draws_one_point_per_image_and_branch(runs, tmp_path):
    # One OpenMP thread: on a busy 2-core machine sklearn's threads spin against each other (10x slower).
    _, path, _, _ = runs['regdb']
    feats = Features(path)
    with threadpool_limits(1):
        xy, identity, group = tsne_points(feats, 1, 3, 'bn', 0)
    rows = np.unique(np.concatenate([feats.side(1, 'query'), feats.side(1, 'gallery')]))
    chosen = sorted(set(feats.identity[rows]))[:3]
    rows = rows[np.isin(feats.identity[rows], chosen)]
    vis, th = (np.count_nonzero(feats.modality[rows] == m) for m in (Modal.VISIBLE, Modal.THERMAL))
    assert vis > 0 and th > 0
    assert xy.shape == (2 * len(rows), 2) and np.isfinite(xy).all()
    assert [np.count_nonzero(group == g) for g in range(4)] == [vis, vis, th, th]
    assert sorted(set(identity)) == chosen
    fig = tsne_figure(xy, identity, group, 'thermal', 'title')
    drawn = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert drawn == [vis, vis, th, th]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ['visible', 'visible middle', 'thermal', 'thermal middle']

    out = tmp_path / 'tsne.png'
    with threadpool_limits(1):
        visualize.main(['tsne', '--features', str(path), '--ids', '3', '--dpi', '40', '--out', str(out)])
    assert Image.open(out).size == (200, 176)


def test_distances_between_modalities(runs, tmp_path):
    _, path, _, _ = runs['regdb']
    feats = Features(path)
    distances = cross_modal_distances(feats, 3, 'bn')
    rows = np.concatenate([feats.side(3, 'query'), feats.side(3, 'gallery')])
    vis, th = rows[feats.modality[rows] == Modal.VISIBLE], rows[feats.modality[rows] == Modal.THERMAL]
    for branch in ('ori', 'mid'):
        f = feats.arrays[f'bn_{branch}'].astype(np.float64)
        pairs = [(1 - f[a] @ f[b] / np.linalg.norm(f[a]) / np.linalg.norm(f[b]), feats.identity[a] == feats.identity[b])
                 for a in vis for b in th]
        intra, inter = distances[branch]
        assert len(intra) == sum(s for _, s in pairs) and len(inter) == sum(not s for _, s in pairs)
        assert intra.mean() == pytest.approx(np.mean([d for d, s in pairs if s]), rel=1e-9)
        assert inter.mean() == pytest.approx(np.mean([d for d, s in pairs if not s]), rel=1e-9)
    out = tmp_path / 'distances.png'
    visualize.main(['distances', '--features', str(path), '--trial', '3', '--dpi', '50', '--out', str(out)])
    assert Image.open(out).size == (400, 160)


def test_cmc_curves_of_several_runs(runs, tmp_path, capsys):
    sysu, llcm = (tmp_path / 'sysu.json', tmp_path / 'llcm.json')
    sysu.write_text(json.dumps(runs['sysu'][0]))
    llcm.write_text(json.dumps(runs['llcm'][0]))
    out = tmp_path / 'cmc.png'
    visualize.main(['cmc', str(sysu), str(llcm), '--labels', 'SYSU', 'LLCM', '--dpi', '50', '--out', str(out)])
    assert Image.open(out).size == (250, 180)
    old = tmp_path / 'old.json'
    old.write_text(json.dumps({k: v for k, v in runs['sysu'][0].items() if k != 'cmc'}))
    with pytest.raises(ReIDError, match='has no "cmc" curves'):
        visualize.main(['cmc', str(old), '--out', str(tmp_path / 'x.png')])
    with pytest.raises(ReIDError, match='--labels gives 1 names for 2'):
        visualize.main(['cmc', str(sysu), str(llcm), '--labels', 'a', '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()


# ----------------------------------------------------------------------------- model subcommands
def test_middle_grid_shows_each_image_beside_its_middle_image(checkpoints, sysu_root, tmp_path):
    images = [os.path.join(sysu_root, 'cam3', pid, '0001.jpg') for pid in ('0003', '0004', '0005')]
    out = tmp_path / 'middle.png'
    visualize.main(['middle', '--resume', str(checkpoints / 'init_trial_3.t'), *images, '--modality', 'thermal',
                    '--columns', '2', '--height', '32', *MODEL, '--out', str(out)])
    grid = np.asarray(Image.open(out).convert('RGB'))
    assert grid.shape[1::-1] == grid_size(4, 2, rows=2)   # 2 pairs per row; captions of 2 lines
    cell_h = TILE_H + 2 * B + 2 * LINE

    net = load_model(str(checkpoints / 'init_trial_3.t'), torch.device('cpu'), 'resnet50').eval()
    from data_loader import TestData
    x = torch.stack([TestData(images, [0, 0, 0], 32, 16)[i][0] for i in range(3)])
    with torch.no_grad():
        middle = net.middle_modality(x, x, Modal.THERMAL)[0].permute(0, 2, 3, 1).numpy()
    for i in range(3):
        m = middle[i]
        expected = np.round((m - m.min()) / (m.max() - m.min()) * 255)
        row, col = divmod(2 * i + 1, 4)
        x0, y0 = M + col * (CELL_W + G) + INSET + B, M + row * (cell_h + G) + B
        np.testing.assert_allclose(grid[y0:y0 + 32, x0:x0 + 16], expected, atol=1)


def manual_maps(net, x, modal):
    """MIA1's spatial attention of both branches and layer 4's energy, by running the network's parts
    by hand (no hooks)."""
    with torch.no_grad():
        mid_images = net.middle_modality(x, x, modal)[0]
        stems = (net.visible_module, net.visible_moduleA) if modal == Modal.VISIBLE else (net.thermal_module,
                                                                                           net.thermal_moduleA)
        out = torch.cat([stems[0](x), stems[1](mid_images)])
        residual, spatial = None, None
        for i, mia in enumerate((net.MIA1, net.MIA2, net.MIA3), start=1):
            out = net.base_resnet.layer(i, out)
            if i == 1:
                spatial = [mia.CBAM_ori.sa(g * mia.CBAM_ori.ca(g))[:, 0] for g in out.chunk(2)]
            ori, mid, residual = mia(*out.chunk(2), residual)
            out = torch.cat([ori, mid])
        out = net.base_resnet.layer(4, net.MFA(out))
    return spatial, out.pow(2).sum(1).chunk(2), mid_images


def test_attention_maps_of_each_mia_and_layer4(checkpoints, sysu_root, tmp_path):
    images = [os.path.join(sysu_root, 'cam1', pid, '0001.jpg') for pid in ('0003', '0004')]
    out = tmp_path / 'attention.png'
    ckpt = str(checkpoints / 'init_trial_1.t')
    visualize.main(['attention', '--resume', ckpt, *images, '--modality', 'visible', '--height', '32', *MODEL,
                    '--out', str(out)])
    grid = np.asarray(Image.open(out).convert('RGB')).astype(np.int64)
    # per image: the image, its middle image, MIA1..3 over each branch, the energy of each branch; 4 key lines
    assert grid.shape[1::-1] == grid_size(10, 2, rows=2, key=4)
    cell_h = TILE_H + 2 * B + 2 * LINE
    tile = lambda row, col: grid[M + row * (cell_h + G) + B:][:32, M + col * (CELL_W + G) + INSET + B:][:, :16]
    for col in range(2, 10):   # every attention tile differs between the two images
        assert np.abs(tile(0, col) - tile(1, col)).max() > 3, col

    net = load_model(ckpt, torch.device('cpu'), 'resnet50').eval()
    inputs, x = network_inputs(images, 32, 16, torch.device('cpu'))
    maps = attention.attention_maps(net, x, Modal.VISIBLE)
    assert list(maps['spatial']) == [(i, g) for i in (1, 2, 3) for g in ('original', 'middle')]
    assert [maps['spatial'][(i, 'original')].shape for i in (1, 2, 3)] == [(2, 8, 4), (2, 4, 2), (2, 2, 1)]
    spatial, energy, middle = manual_maps(net, x, Modal.VISIBLE)
    for k, group in enumerate(('original', 'middle')):
        torch.testing.assert_close(maps['spatial'][(1, group)], spatial[k])
        torch.testing.assert_close(maps['energy'][group], energy[k])
    torch.testing.assert_close(maps['middle'], middle)
    # the grid's tiles are those maps: MIA1 over the image (fixed scale), energy min-max scaled over the middle image
    jet = matplotlib.colormaps['jet']
    for b in range(2):
        shown = inputs[b].resize((16, 32), Image.Resampling.NEAREST)
        expected = attention.overlay(shown, attention.upsample(spatial[0][b], (16, 32)), jet)
        np.testing.assert_allclose(tile(b, 2), np.asarray(expected), atol=1)
        shown = attention.scaled_image(middle[b]).resize((16, 32), Image.Resampling.NEAREST)
        values = attention.upsample(energy[1][b], (16, 32))
        values = (values - values.min()) / (values.max() - values.min())
        np.testing.assert_allclose(tile(b, 9), np.asarray(attention.overlay(shown, values, jet)), atol=1)
    # a network built without some MIAs (its architecture() says which) gets tiles for those it has
    net.architecture = lambda: {'middle': True, 'mia': [1, 3], 'mfa': True}
    assert list(attention.attention_maps(net, x, Modal.VISIBLE)['spatial']) == [
        (1, 'original'), (1, 'middle'), (3, 'original'), (3, 'middle')]
    with pytest.raises(ReIDError, match='image not found: .*none.jpg'):
        visualize.main(['attention', '--resume', ckpt, str(tmp_path / 'none.jpg'), '--modality', 'visible', *MODEL,
                        '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()



def test_attention_maps_of_a_network_without_the_middle_modality():
    """A --no-middle network with MIAs after layers 1 and 3: the original branch alone, those two MIAs."""
    torch.manual_seed(0)
    net = embed_net(5, middle=False, mia=(1, 3))
    x = torch.rand(2, 3, 32, 16)
    maps = attention.attention_maps(net, x, Modal.THERMAL)
    assert list(maps['spatial']) == [(1, 'original'), (3, 'original')] and maps['middle'] is None
    assert list(maps['energy']) == ['original'] and maps['energy']['original'].shape == (2, 2, 1)
    assert maps['spatial'][(1, 'original')].shape == (2, 8, 4) and maps['spatial'][(3, 'original')].shape == (2, 2, 1)
    # the hooked layer-1 map is MIA1's spatial attention of its channel-attended input, computed by hand
    with torch.no_grad():
        x1 = net.base_resnet.layer(1, net.thermal_module(x))
        x1 = x1 * net.MIA1.CBAM_ori.ca(x1)
        torch.testing.assert_close(maps['spatial'][(1, 'original')], net.MIA1.CBAM_ori.sa(x1)[:, 0])


def test_rank_own_images(checkpoints, sysu_root, tmp_path, capsys):
    gallery = tmp_path / 'gallery'
    shutil.copytree(os.path.join(sysu_root, 'cam1', '0003'), gallery / 'a')
    shutil.copytree(os.path.join(sysu_root, 'cam4', '0004'), gallery / 'b')
    (gallery / 'notes.txt').write_text('not an image')
    query = os.path.join(sysu_root, 'cam3', '0003', '0001.jpg')
    out = tmp_path / 'rank.png'
    ckpt = str(checkpoints / 'init_trial_1.t')
    visualize.main(['rank', '--resume', ckpt, '--query', str(query), '--query-modality', 'thermal',
                    '--gallery', str(gallery), '--topk', '3', '--height', '32', *MODEL, '--out', str(out)])
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith('    ')]
    assert [int(p[0]) for p in printed] == [1, 2, 3]
    sims = [float(p[1]) for p in printed]
    assert sims == sorted(sims, reverse=True)
    # the same similarities as test.py's embedding of these images
    net = load_model(ckpt, torch.device('cpu'), 'resnet50')
    bank = FeatureBank(net, torch.device('cpu'), 32, 16, 64, 0)
    paths = sorted(str(p) for p in gallery.rglob('*.jpg'))
    bank.add([str(query)], Modal.THERMAL)
    bank.add(paths, Modal.VISIBLE)
    q = bank.get(ImageSet([str(query)], None, None, Modal.THERMAL))
    g = bank.get(ImageSet(paths, None, None, Modal.VISIBLE))
    expected = score_similarities(q, g)['ALL'][0]
    top = np.argsort(-expected)[:3]
    assert [p[2] for p in printed] == [paths[j] for j in top]
    np.testing.assert_allclose(sims, expected[top], atol=1e-4)
    image = Image.open(out).convert('RGB')
    assert image.size == grid_size(4, 3, key=1)   # captions: rank and similarity, folder, file name; the score
    assert all(border_colour(image, k) == WHITE for k in range(4))   # no identities

    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ReIDError, match=f'--gallery {empty} holds no images'):
        visualize.main(['rank', '--resume', ckpt, '--query', str(query), '--query-modality', 'thermal',
                        '--gallery', str(empty), *MODEL, '--out', str(tmp_path / 'x.png')])
    (gallery / 'broken.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(ReIDError, match='cannot read image .*broken.jpg'):
        visualize.main(['rank', '--resume', ckpt, '--query', str(query), '--query-modality', 'thermal',
                        '--gallery', str(gallery), *MODEL, '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()


# ----------------------------------------------------------------------------- bad input
def test_files_of_another_kind_are_refused(tmp_path):
    other = tmp_path / 'other.npz'
    np.savez(other, x=np.zeros(3))
    single = tmp_path / 'single.npy'
    np.save(single, np.zeros(3))
    text = tmp_path / 'text.npz'
    text.write_text('hello')
    foreign = tmp_path / 'foreign.npz'
    np.savez(foreign, meta=np.array(json.dumps({'kind': 'something else'})))
    for path, message in ((other, 'has no "meta" entry'), (single, 'cannot read'), (text, 'cannot read'),
                          (foreign, 'is not a features file written by test.py --save-features'),
                          (tmp_path / 'none.npz', 'features file not found')):
        with pytest.raises(ReIDError, match=message):
            visualize.main(['distances', '--features', str(path), '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()


def synthetic_features(folder):
    """The arrays of a features file of one SYSU-MM01 trial (three identities, a thermal query and a
    visible gallery image each), with random unit feature vectors: no network."""
    rng = np.random.default_rng(0)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    meta = {'kind': 'ifalnet-features', 'version': 1, 'dataset': 'sysu', 'mode': 'all', 'protocol': 'release',
            'tvsearch': False, 'data_root': str(folder), 'img_h': 32, 'img_w': 16, 'arch': 'resnet50',
            'llcm_pool_quirk': False, 'checkpoints': [str(folder / 'm_best.t')], 'trials': [0], 'trial_models': [0],
            'flip': False, 'gallery': 'random', 'shots': 1}
    return {'meta': meta, 'path': np.array([f'cam{c}/{i:04d}/0001.jpg' for i in (1, 2, 3) for c in (3, 1)]),
            'identity': np.repeat(np.arange(1, 4, dtype=np.int64), 2), 'camera': np.tile(np.array([3, 1]), 3),
            'modality': np.tile(np.array([2, 1]), 3), 'model': np.zeros(6, dtype=np.int64),
            **{name: unit(rng.standard_normal((6, 2048))) for name in FEATURES},
            'query_0': np.array([0, 2, 4]), 'gallery_0': np.array([1, 3, 5])}


@pytest.mark.parametrize('case', ['float index', 'float identity', 'row out of range', 'unknown dataset',
                                  'narrow features', 'widths differ', 'integer features', 'empty query',
                                  'unknown branch', 'model out of range', 'text trials'])
def test_damaged_features_files_are_one_line_before_any_score_or_figure(tmp_path, case):
    arrays = synthetic_features(tmp_path)
    path = tmp_path / 'f.npz'

    def write(arrays):
        np.savez(path, **{**arrays, 'meta': np.array(json.dumps(arrays['meta']))})
    write(arrays)
    assert test_script.main(['--from-features', str(path)])['ALL']['rank1'] >= 0   # the intact file scores
    damaged = 'a damaged features file'
    edit, message = {
        'float index': (lambda a: a.update(query_0=a['query_0'].astype(np.float64)),
                        f'"query_0" is a float64 array of shape (3,); expected a list of whole numbers: {damaged}'),
        'float identity': (lambda a: a.update(identity=a['identity'] + 0.5),
                           f'"identity" is a float64 array of shape (6,); expected a list of whole numbers: {damaged}'),
        'row out of range': (lambda a: a.update(gallery_0=np.array([1, 3, 6])),
                             f'the gallery of trial 0 names row 6; expected rows 0..5: {damaged}'),
        'unknown dataset': (lambda a: a['meta'].update(dataset='market'),
                            f'"meta" names the dataset \'market\'; expected one of sysu, regdb, llcm: {damaged}'),
        'narrow features': (lambda a: a.update(bn_mid=a['bn_mid'][:, :100]),
                            'the features "bn_mid" are a float32 array of shape (6, 100); expected (6, 2048) floats'),
        'widths differ': (lambda a: a.update(pool_ori=a['pool_ori'].reshape(3, 4096)),
                          'the features "pool_ori" are a float32 array of shape (3, 4096); expected (6, 2048) floats'),
        'integer features': (lambda a: a.update(pool_mid=np.ones((6, 2048), dtype=np.int64)),
                             'the features "pool_mid" are a int64 array of shape (6, 2048)'),
        'empty query': (lambda a: a.update(query_0=np.array([], dtype=np.int64)),
                        f"the query of trial 0 is empty; expected its images' rows: {damaged}"),
        'unknown branch': (lambda a: a.update(modality=np.array([2, 1, 3, 1, 2, 1])),
                           f'"modality" holds 3; expected the network branches (1, 2): {damaged}'),
        'model out of range': (lambda a: a.update(model=np.array([0, 0, 0, 0, 0, 1])),
                               f'"model" holds 1; expected indices into "meta" "checkpoints" (0): {damaged}'),
        'text trials': (lambda a: a['meta'].update(trials=['0']),
                        f'"meta" "trials" is [\'0\']; expected a non-empty list of trial numbers: {damaged}'),
    }[case]
    edit(arrays)
    write(arrays)
    for run in (lambda: test_script.main(['--from-features', str(path), '--results', str(tmp_path / 'r.json')]),
                lambda: visualize.main(['distances', '--features', str(path), '--out', str(tmp_path / 'd.png')])):
        with pytest.raises(ReIDError) as err:
            run()
        assert str(err.value).startswith(f'{path}: {message}') and '\n' not in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ['f.npz']


def test_every_figure_carries_the_environment_stamp(runs, tmp_path):
    """PNG figures hold the stamp in a text chunk, PDF as the Subject, SVG as the Description; plots
    and image grids alike."""
    results = tmp_path / 'sysu.json'
    results.write_text(json.dumps(runs['sysu'][0]))
    here = environment_stamp.stamp()
    for name in ('cmc.png', 'cmc.svg', 'cmc.pdf'):
        visualize.main(['cmc', str(results), '--dpi', '30', '--out', str(tmp_path / name)])
    visualize.main(['ranking', '--features', str(runs['sysu'][1]), '--queries', '1', '--topk', '2', '--height', '16',
                    '--out', str(tmp_path / 'ranking.png')])
    for name in ('cmc.png', 'ranking.png'):
        assert json.loads(Image.open(tmp_path / name).text[environment_stamp.FIGURE_KEY]) == here
    svg = ElementTree.parse(tmp_path / 'cmc.svg')
    described = [e.text for e in svg.iter() if e.tag.endswith('}description')]
    assert [json.loads(text) for text in described] == [here]
    pdf = (tmp_path / 'cmc.pdf').read_bytes()
    assert b'/Subject' in pdf and here['packages']['torch'].encode() in pdf


def test_cmc_of_a_results_file_with_values_outside_0_1_is_refused(tmp_path):
    curve = [0.5] * 20
    scores = {'rank1': 0.5, 'rank5': 0.5, 'rank10': 0.5, 'rank20': 0.5, 'mAP': 0.5, 'mINP': 0.5}
    for where, value in (('cmc', float('nan')), ('mean', float('inf')), ('cmc', -3)):
        report = {'dataset': 'llcm', 'per_trial': [{'trial': 1, 'ALL': scores}], 'mean': {'ALL': scores},
                  'cmc': {'mean': {'ALL': curve}, 'per_trial': [{'trial': 1, 'ALL': curve}]}}
        if where == 'cmc':
            report['cmc']['mean']['ALL'] = [*curve[:19], value]
        else:
            report['mean']['ALL'] = {**scores, 'mAP': value}
        (tmp_path / 'r.json').write_text(json.dumps(report))
        key = 'cmc.mean.ALL[19]' if where == 'cmc' else 'mean.ALL.mAP'
        with pytest.raises(ReIDError, match=rf'r.json: {re.escape(key)} is {value}; expected a fraction within \[0, 1\]'):
            visualize.main(['cmc', str(tmp_path / 'r.json'), '--out', str(tmp_path / 'c.png')])
    assert not (tmp_path / 'c.png').exists()


def test_grid_labels_say_what_the_scores_are():
    # enough decimals to tell neighbours apart (ALL sums eight cosines: close scores near 8)
    assert score_labels([7.99412, 7.99361, 7.5]) == ['7.9941', '7.9936', '7.5000']
    assert score_labels([0.91, 0.5, 0.5]) == ['0.91', '0.50', '0.50']    # ties stay ties
    assert score_key('ALL') == '#rank  ALL = sum of 8 cosines, max 8'
    assert score_key('VIS-IR FC') == '#rank  VIS-IR FC = a cosine, max 1'
    assert score_key('ALL FC') == '#rank  ALL FC = sum of 4 cosines, max 4'


def test_plots_for_a_paper(tmp_path):
    rng = np.random.default_rng(0)
    # distance panels share one x range, whatever each branch's own range
    fig = distances_figure({'ori': (rng.uniform(0, 0.3, 20), rng.uniform(0.2, 0.6, 50)),
                                      'mid': (rng.uniform(0.5, 0.8, 20), rng.uniform(0.7, 1.4, 50))}, 'infrared', 't')
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
    lo, hi = fig.axes[0].get_xlim()
    assert lo <= 0.05 and hi >= 1.35
    # the t-SNE legend lies outside the axes, so it covers no point
    identity, group = np.repeat(np.arange(4), 8), np.tile(np.arange(4), 8)
    fig = tsne_figure(rng.normal(size=(32, 2)), identity, group, 'infrared', 't-SNE')
    fig.canvas.draw()
    legend, axes = fig.axes[0].get_legend().get_window_extent(), fig.axes[0].get_window_extent()
    assert legend.x0 >= axes.x1
    # vector figures: the format follows --out's name; another name is refused before any work
    for name, start in (('d.pdf', b'%PDF'), ('d.svg', b'<?xml')):
        save_figure(fig, str(tmp_path / name), 100)
        assert (tmp_path / name).read_bytes().startswith(start)
    assert b'<svg' in (tmp_path / 'd.svg').read_bytes()[:500]
    with pytest.raises(ReIDError, match=r'--out .*d\.jpg: expected a \.png, \.pdf or \.svg file name'):
        visualize.main(['distances', '--features', str(tmp_path / 'none.npz'), '--out', str(tmp_path / 'd.jpg')])
    assert not (tmp_path / 'd.jpg').exists()
    # CMC titles name the dataset, mode and direction from the results files
    assert results_protocol({'dataset': 'sysu', 'mode': 'indoor', 'direction': 'infrared -> visible'}) == \
        'SYSU-MM01 indoor-search, infrared -> visible'
    assert results_protocol({'dataset': 'regdb', 'direction': 'thermal -> visible'}) == 'RegDB, thermal -> visible'


def test_help_describes_every_figure(capsys):
    with pytest.raises(SystemExit):
        visualize.main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'middle-modality images, attention maps, ranking lists, t-SNE, distance histograms, CMC curves, and ' \
        "ranking one's own images." in text


@pytest.mark.parametrize('blocked, command', [('sklearn', 'tsne'), ('matplotlib', 'cmc'), ('matplotlib', 'attention')])
def test_missing_optional_dependency(tmp_path, blocked, command):
    args = {'tsne': ['tsne', '--features', str(tmp_path / 'f.npz')], 'cmc': ['cmc', str(tmp_path / 'r.json')],
            'attention': ['attention', '--resume', str(tmp_path / 'c.t'), str(tmp_path / 'a.jpg'),
                          '--modality', 'visible']}[command]
    code = (f'import sys; sys.modules[{blocked!r}] = None; import runpy; '
            f'sys.argv = ["visualize.py"] + {args + ["--out", str(tmp_path / "x.png")]!r}; '
            f'runpy.run_path("visualize.py", run_name="__main__")')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    package = {'sklearn': 'scikit-learn', 'matplotlib': 'matplotlib'}[blocked]
    assert f'visualize.py {command} needs {package}, which is not installed: pip install -r requirements-vis.txt' \
        in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'x.png').exists()


# ----------------------------------------------------------------------------- nothing cut
def texts_outside(fig, dpi):
    """What of `fig`, drawn at `dpi`, is not wholly inside the canvas: the axes (with their titles, tick
    labels, axis labels and legends, as drawn) and the figure's own texts (its suptitle)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer, box = canvas.get_renderer(), fig.bbox
    inside = lambda b: b.x0 >= box.x0 - 0.5 and b.x1 <= box.x1 + 0.5 and b.y0 >= box.y0 - 0.5 and b.y1 <= box.y1 + 0.5
    outside = [f'axes {k}: {ax.get_title()!r}' for k, ax in enumerate(fig.axes) if not inside(ax.get_tightbbox(renderer))]
    outside += [t.get_text() for t in fig.texts if t.get_text() and not inside(t.get_window_extent(renderer))]
    return outside


@pytest.mark.parametrize('dpi', [40, 300])
def test_plot_titles_labels_and_legends_are_whole_at_any_dpi(dpi):
    """The README's commands drew titles wider than the figure ('NE of bn features ...'): every text must
    lie inside the canvas, whatever the resolution."""
    rng = np.random.default_rng(0)
    identity, group = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    figs = {'tsne': tsne_figure(rng.normal(size=(32, 2)), identity, group, 'infrared',
                                't-SNE of bn features: 8 identities (SYSU-MM01, trial 0), a long title to wrap'),
            'distances': distances_figure({'ori': (rng.uniform(0, 0.3, 20), rng.uniform(0.2, 0.6, 50)),
                                           'mid': (rng.uniform(0, 0.3, 20), rng.uniform(0.2, 0.6, 50))}, 'infrared',
                                          'bn features (SYSU-MM01 all-search, infrared -> visible, trial 0), '
                                          'with a title longer than two panels'),
            'cmc': cmc_figure([(np.linspace(0.3, 1, 20), 0.3, 0.4, 'SYSU-MM01 all-search, infrared -> visible')] * 2,
                              ['untrained model of the demo', 'trained model of the demo'], 'ALL')}
    for name, fig in figs.items():
        assert texts_outside(fig, dpi) == [], name


def test_grid_captions_are_drawn_whole():
    """A caption wider than its tile widens the cell: the rank number and the score of '#1 7.979733' stay."""
    tiles = [Image.new('RGB', (16, 32), (128, 128, 128))] * 3
    captions = [['query', 'cam3', 'id 12'], ['#1 7.979733', 'cam1', 'id 12'], ['#2 7.979712', 'cam2', 'id 40']]
    grid = draw_grid(tiles, captions, [BLUE, GREEN, RED], 3)
    font_width = ImageDraw.Draw(grid).textlength('#1 7.979733', font=caption_font())
    assert grid.width >= 2 * MARGIN + 3 * font_width + 2 * GAP
