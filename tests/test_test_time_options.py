"""Test-time options of test.py and evaluation.py: re-ranking, flip, the official SYSU-MM01
galleries with multi-shot, the spread over trials, per-camera scores, re-scoring saved features.
One untrained checkpoint (32x16, conftest's untrained_checkpoint) on the session's synthetic SYSU-MM01 and LLCM
sets serves them all."""
import json
import os

import numpy as np
import pytest
import scipy.io
import torch

import data_manager as dm
import test as test_script
from data_loader import TestData
from eval_metrics import eval_sysu
from ifalnet.checkpoints import load_model, save_checkpoint
from ifalnet.feature_bank import FeatureBank, embed
from ifalnet.features_file import FEATURE_NAMES, Features, saved_problems
from ifalnet.problems import ImageSet
from ifalnet.report_text import format_spread
from ifalnet.rerank import re_ranking
from ifalnet.scoring import (SCORES, Rerank, camera_report, matched_queries, score_similarities, score_trials,
                             score_vectors)
from ifalnet.toy_datasets import make_sysu
from ifalnet.weights_folder import sha256_of
from model import Modal, embed_net
from utils import ReIDError

FAST = ['--img_h', '32', '--img_w', '16', '--workers', '0', '--test-batch', '32', '--gpu', '']


def run(tmp_path, name, data_path, checkpoint, *extra, dataset='sysu'):
    results = tmp_path / f'{name}.json'
    test_script.main(['--dataset', dataset, '--data-path', data_path, '--resume', checkpoint,
                      '--results', str(results), *FAST, *extra])
    return json.loads(results.read_text())


@pytest.fixture(scope='module')
def saved_run(tmp_path_factory, sysu_root, untrained_checkpoint):
    """test.py on SYSU-MM01 trials 0-2, with the features file and the results file."""
    out = tmp_path_factory.mktemp('tta_saved')
    features = out / 'features.npz'
    report = run(out, 'plain', sysu_root, untrained_checkpoint, '--trials', '0,1,2', '--save-features', str(features))
    return out, features, report


# ----------------------------------------------------------------------------- score vectors, re-ranking
def test_score_vectors_give_the_release_similarities():
    rng = np.random.default_rng(0)
    feats = lambda n: {k: rng.standard_normal((n, 6)) for k in FEATURE_NAMES}
    q, g = feats(4), feats(7)
    for quirk in (False, True):
        sims = score_similarities(q, g, quirk)
        vectors = score_vectors(q, g, quirk)
        assert list(vectors) == list(SCORES)
        for name, (qv, gv) in vectors.items():
            np.testing.assert_allclose(qv @ gv.T, sims[name], rtol=1e-12, atol=1e-12)


def saved(features, trials):
    return saved_problems(Features(features), trials)


def test_reranked_scores_are_the_metric_of_re_ranking_the_vectors(saved_run):
    problems, bank = saved(saved_run[1], [0])
    rerank = Rerank(4, 2, 0.4)
    (_, raw), = score_trials(problems, bank, rerank)
    (_, plain), = score_trials(problems, bank)
    pr = problems[0]
    q, g = bank.get(pr.query), bank.get(pr.gallery)
    for name, (qv, gv) in score_vectors(q, g).items():
        d = lambda a, b: np.sqrt(np.maximum(((a[:, None] - b[None]) ** 2).sum(-1), 0))
        expected = eval_sysu(re_ranking(d(qv, gv), d(qv, qv), d(gv, gv), 4, 2, 0.4), pr.query.ids, pr.gallery.ids,
                             pr.query.cams, pr.gallery.cams)
        np.testing.assert_array_equal(raw[name][0], expected[0])
        assert raw[name][1:] == pytest.approx(expected[1:], rel=1e-6)
    assert any(raw[n][1] != plain[n][1] for n in SCORES)   # it did change the scores


# ----------------------------------------------------------------------------- flip
def test_flip_is_the_normalised_mean_of_the_image_and_its_mirror(sysu_root, untrained_checkpoint):
    net = load_model(untrained_checkpoint, torch.device('cpu')).eval()
    paths, _, _ = dm.process_query_sysu(sysu_root)
    paths = paths[:5]
    flipped = FeatureBank(net, torch.device('cpu'), 32, 16, 4, 0, flip=True)
    flipped.add(paths, Modal.THERMAL)
    plain = FeatureBank(net, torch.device('cpu'), 32, 16, 4, 0)
    plain.add(paths, Modal.THERMAL)
    x = torch.stack([TestData(paths, np.zeros(5), 32, 16)[i][0] for i in range(5)])
    with torch.no_grad():
        a = plain.embed_batch(x, Modal.THERMAL)
        b = plain.embed_batch(x.flip(3), Modal.THERMAL)
    mean = (a + b) / 2
    expected = (mean / mean.norm(dim=2, keepdim=True)).numpy()
    image_set = ImageSet(paths, None, None, Modal.THERMAL)
    got, unflipped = flipped.get(image_set), plain.get(image_set)
    for k, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(got[name], expected[:, k], atol=2e-6)
        np.testing.assert_allclose(np.linalg.norm(got[name], axis=1), 1, atol=1e-6)
        np.testing.assert_allclose(unflipped[name], a[:, k].numpy(), atol=1e-6)
        assert not np.allclose(got[name], unflipped[name], atol=1e-4)


# ----------------------------------------------------------------------------- official galleries
@pytest.fixture(scope='module')
def sysu_perm(tmp_path_factory):
    """A SYSU-MM01 set with 12 images per camera (more than 10 shots) and a missing camera folder."""
    return make_sysu(tmp_path_factory.mktemp('camera_perm'), train_ids=(1,), val_ids=(2,), test_ids=(3, 4),
                     images_per_cam=11, size=(16, 8), missing=('cam2/0004',))


@pytest.mark.parametrize('mode, shots, trial', [('all', 1, 0), ('all', 10, 3), ('indoor', 1, 9), ('indoor', 10, 5)])
def test_official_gallery_is_the_permutation_row_of_the_trial(sysu_perm, mode, shots, trial):
    cells = scipy.io.loadmat(os.path.join(sysu_perm, 'exp', 'rand_perm_cam.mat'))['rand_perm_cam']
    cameras = (1, 2, 4, 5) if mode == 'all' else (1, 2)
    expected = []
    for pid in (3, 4):
        for camera in cameras:
            entry = cells[camera - 1][0].squeeze()[pid - 1]
            if entry.size:
                expected += [os.path.join(sysu_perm, f'cam{camera}', f'{pid:04d}', f'{int(k):04d}.jpg')
                             for k in entry[trial][:shots]]
    paths, ids, cams = dm.process_gallery_sysu(sysu_perm, mode, trial, 'official', shots)
    assert paths == expected and len(paths) == (len(cameras) * 2 - 1) * shots   # cam2/0004 is missing
    assert list(ids) == [int(p.split(os.sep)[-2]) for p in paths] and list(cams) == [int(p.split(os.sep)[-3][3:])
                                                                                     for p in paths]
    assert len(set(paths)) == len(paths)


def test_random_multi_shot_draws_ten_distinct_images_per_folder(sysu_perm):
    paths, ids, cams = dm.process_gallery_sysu(sysu_perm, 'all', 2, 'random', 10)
    folders = {}
    for p in paths:
        folders.setdefault(os.path.dirname(p), []).append(p)
    assert len(folders) == 7 and all(len(set(f)) == 10 for f in folders.values())
    assert paths == dm.process_gallery_sysu(sysu_perm, 'all', 2, 'random', 10)[0]        # the trial fixes the draw
    assert paths != dm.process_gallery_sysu(sysu_perm, 'all', 3, 'random', 10)[0]
    assert dm.process_gallery_sysu(sysu_perm, 'all', 2)[0] == dm.draw_gallery(
        sysu_perm, ['0003', '0004'], dm.SYSU_RGB_CAMERAS['all'], 2)                   # single shot: the release


def test_missing_or_malformed_permutation_file(tmp_path, sysu_perm):
    root = make_sysu(tmp_path / 'set', train_ids=(1,), val_ids=(2,), test_ids=(3,), images_per_cam=1, size=(16, 8))
    mat = os.path.join(root, 'exp', 'rand_perm_cam.mat')
    os.remove(mat)
    with pytest.raises(ReIDError, match=r'--gallery official needs .*rand_perm_cam.mat, which does not exist'):
        dm.process_gallery_sysu(root, 'all', 0, 'official')
    with open(mat, 'wb') as f:
        f.write(b'not a mat file')
    with pytest.raises(ReIDError, match=r'cannot read .*rand_perm_cam.mat'):
        dm.process_gallery_sysu(root, 'all', 0, 'official')
    scipy.io.savemat(mat, {'rand_perm_cam': np.zeros((3, 1))})
    with pytest.raises(ReIDError, match='rand_perm_cam is not a 6 x 1 cell array'):
        dm.process_gallery_sysu(root, 'all', 0, 'official')
    scipy.io.savemat(mat, {'something_else': np.zeros((3, 1))})
    with pytest.raises(ReIDError, match=r'cannot read .*KeyError'):
        dm.process_gallery_sysu(root, 'all', 0, 'official')


def test_official_multi_shot_through_test_py(tmp_path, sysu_perm, untrained_checkpoint):
    report = run(tmp_path, 'official', sysu_perm, untrained_checkpoint, '--trials', '0', '--gallery', 'official',
                 '--shots', '10')
    assert (report['gallery'], report['shots'], report['flip'], report['rerank']) == ('official', 10, False, None)
    with pytest.raises(ReIDError, match='--gallery and --shots choose SYSU-MM01 galleries; regdb has its own'):
        test_script.main(['--dataset', 'regdb', '--resume', untrained_checkpoint, '--gallery', 'official', *FAST])


# ----------------------------------------------------------------------------- spread, per camera
def test_std_is_numpys_over_the_trials_and_printed(saved_run, capsys):
    _, _, report = saved_run
    for name in SCORES:
        for key, value in report['std'][name].items():
            assert value == pytest.approx(np.std([t[name][key] for t in report['per_trial']]), abs=1e-15)
            assert report['mean'][name][key] == pytest.approx(np.mean([t[name][key] for t in report['per_trial']]))
    text = format_spread('Spread', report['mean'], report['std'])
    all_row = text.splitlines()[-1]
    assert all_row.split()[0] == 'ALL' and f'{100 * report["mean"]["ALL"]["rank1"]:.2f} ± ' \
                                           f'{100 * report["std"]["ALL"]["rank1"]:.2f}%' in all_row


def test_per_camera_scores_recombine_to_the_overall_ones(saved_run, llcm_root, untrained_checkpoint):
    net = load_model(untrained_checkpoint, torch.device('cpu'))
    llcm = embed(net, 'llcm', llcm_root, [0, 1], torch.device('cpu'), img_h=32, img_w=16, batch_size=32,
                            workers=0)
    for (problems, bank), cameras in ((saved(saved_run[1], [0, 1, 2]), {3, 6}), (llcm, None)):
        by_camera = {}
        results = score_trials(problems, bank, by_camera=by_camera)
        for trial, raw in results:
            for name in SCORES:
                per = by_camera[trial][name]
                assert cameras is None or set(per) == cameras
                counts = np.array([v[3] for v in per.values()])
                assert counts.sum() == matched_queries(problems[trial]).sum()
                for k, value in ((0, raw[name][0][0]), (1, raw[name][1]), (2, raw[name][2])):
                    parts = np.array([v[0][0] if k == 0 else v[k] for v in per.values()])
                    assert (parts * counts).sum() / counts.sum() == pytest.approx(value, rel=1e-6)
        report = camera_report(by_camera)
        for camera, s in report['ALL'].items():
            runs = [scores['ALL'][int(camera)] for scores in by_camera.values() if int(camera) in scores['ALL']]
            assert s['rank1'] == pytest.approx(np.mean([r[0][0] for r in runs]))
            assert s['trials'] == len(runs)


def test_per_camera_in_the_results_file_and_printed(saved_run, capsys):
    _, features, report = saved_run
    assert set(report['per_camera']['ALL']) == {'3', '6'}
    test_script.main(['--from-features', str(features), '--per-camera', '--trials', '0'])
    out = capsys.readouterr().out
    assert 'ALL per query camera (mean over 1 trial(s))' in out and '  cam3 ' in out


# ----------------------------------------------------------------------------- saved features
def test_from_features_reproduces_the_run_that_wrote_the_file(saved_run, tmp_path, capsys):
    _, features, report = saved_run
    results = tmp_path / 'again.json'
    test_script.main(['--from-features', str(features), '--results', str(results)])
    again = json.loads(results.read_text())
    assert 'no network, no images' in capsys.readouterr().out
    for key in ('mean', 'std', 'per_trial', 'cmc', 'per_camera', 'trials', 'dataset', 'mode', 'protocol'):
        assert again[key] == report[key], key
    # the features file names the checkpoint, not its training arguments, hash or environment stamp
    assert again['checkpoints'] == [{**report['checkpoints'][0], 'args': None, 'sha256': None, 'environment': None}]
    test_script.main(['--from-features', str(features), '--results', str(results), '--trials', '1'])
    assert json.loads(results.read_text())['per_trial'] == report['per_trial'][1:2]
    with pytest.raises(ReIDError, match='cannot be used with --from-features'):
        test_script.main(['--from-features', str(features), '--flip'])


def test_from_features_with_rerank_equals_rerank_on_the_images(saved_run, tmp_path, sysu_root, untrained_checkpoint):
    _, features, _ = saved_run
    options = ['--rerank', '--k1', '5', '--k2', '3', '--lambda-value', '0.2']
    direct = run(tmp_path, 'direct', sysu_root, untrained_checkpoint, '--trials', '1', *options)
    results = tmp_path / 'saved.json'
    test_script.main(['--from-features', str(features), '--results', str(results), '--trials', '1', *options])
    saved = json.loads(results.read_text())
    assert direct['rerank'] == saved['rerank'] == {'k1': 5, 'k2': 3, 'lambda_value': 0.2}
    assert saved['per_trial'] == direct['per_trial'] and saved['mean'] == direct['mean']


def test_bad_re_ranking_parameters(untrained_checkpoint):
    with pytest.raises(ReIDError, match='--lambda-value must be within 0..1, got 2.0'):
        test_script.main(['--resume', untrained_checkpoint, '--rerank', '--lambda-value', '2', *FAST])
    with pytest.raises(ReIDError, match='--k1 must be at least 1, got 0'):
        test_script.main(['--resume', untrained_checkpoint, '--rerank', '--k1', '0', *FAST])


# ----------------------------------------------------------------------------- cross-dataset
def test_a_sysu_checkpoint_tests_on_regdb_and_llcm(tmp_path, regdb_root, llcm_root, capsys):
    torch.manual_seed(0)
    sysu = tmp_path / 'sysu_last.t'
    save_checkpoint({'net': embed_net(5).state_dict(), 'epoch': 3,
                     'args': {'dataset': 'sysu', 'trial': 1, 'img_h': 32, 'img_w': 16}}, sysu)
    for dataset, root, trials in (('regdb', regdb_root, '1'), ('llcm', llcm_root, '0')):
        report = run(tmp_path, dataset, root, str(sysu), '--trials', trials, dataset=dataset)
        out = capsys.readouterr().out
        assert report['dataset'] == dataset and report['trained_on'] == [
            {'checkpoint': str(sysu), 'dataset': 'sysu', 'trial': None, 'img_h': 32, 'img_w': 16, 'epoch': 3}]
        assert report['checkpoints'] == [{'path': str(sysu), 'trials': [int(trials)],
                                          'args': {'dataset': 'sysu', 'trial': 1, 'img_h': 32, 'img_w': 16},
                                          'sha256': sha256_of(sysu), 'environment': None}]
        assert 'this is a cross-dataset test on' in out and '(model trained on SYSU-MM01)' in out
        assert 0 <= report['mean']['ALL']['rank1'] <= 1


def test_a_release_checkpoint_was_trained_on_unknown(saved_run, untrained_checkpoint):
    _, _, report = saved_run
    trained_on, = report['trained_on']
    assert trained_on['dataset'] == 'unknown' and trained_on['checkpoint'] == untrained_checkpoint
    assert report['checkpoints'] == [{'path': untrained_checkpoint, 'trials': report['trials'], 'args': None,
                                      'sha256': sha256_of(untrained_checkpoint), 'environment': None}]
