"""train.py and test.py end to end on synthetic data in the real layouts (tiny images, CPU)."""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import process_sysu
import test as test_script
import train as train_script
from data_loader import TrainBatchSampler, build_train_set, make_train_loader
from ifalnet import devices as device_module
from ifalnet.checkpoints import (RELEASE_SIZE, describe_training, load_model, read_checkpoint, save_checkpoint,
                                 trained_on)
from ifalnet.devices import autocast_dtype
from ifalnet.feature_bank import FeatureBank, evaluate
from ifalnet.flags import parse_epochs
from ifalnet.problems import build_problem
from ifalnet.run_files import keeps_epoch
from ifalnet.scoring import SCORES, feature_spread, score_similarities
from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu
from loss import OriTripletLoss, TcaLoss
from model import embed_net
from recipe import lr_at, make_optimizer, train_epoch
from utils import ReIDError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = ['--img_h', '32', '--img_w', '16']
FAST = SIZE + ['--workers', '0', '--test-batch', '32', '--gpu', '']
TRAIN = FAST + ['--pretrained', 'none', '--batch-size', '2', '--num_pos', '2', '--lr', '0.01',
                '--print-freq', '5']
SCORE_KEYS = {'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP'}


# Datasets of our own, small enough for a few training steps per epoch on a CPU.
@pytest.fixture(scope='module')
def sysu_prepared(tmp_path_factory):
    """SYSU-MM01 layout with its training arrays prepared (the shared fixture stays unprepared)."""
    root = make_sysu(tmp_path_factory.mktemp('sysu_prepared'), train_ids=(1, 2, 3), val_ids=(4,),
                     test_ids=(5, 6, 7), images_per_cam=1, size=(32, 16), missing=('cam2/0006',))
    process_sysu.prepare_sysu(root)
    return root


@pytest.fixture(scope='module')
def llcm_small(tmp_path_factory):
    return make_llcm(tmp_path_factory.mktemp('llcm_small'), train_ids=(1, 2, 3), test_ids=(4, 5, 6),
                     images_per_cam=1, size=(32, 16))


@pytest.fixture(scope='module')
def regdb_small(tmp_path_factory):
    return make_regdb(tmp_path_factory.mktemp('regdb_small'), num_ids=8, images_per_id=2, size=(32, 16))


@pytest.fixture(scope='module')
def regdb_trained(tmp_path_factory, regdb_small):
    return run_train(tmp_path_factory.mktemp('regdb_run'), 'regdb', regdb_small, '--epochs', '1', '--trial', '2')


@pytest.fixture(scope='module')
def llcm_trained(tmp_path_factory, llcm_small):
    return run_train(tmp_path_factory.mktemp('llcm_run'), 'llcm', llcm_small, '--epochs', '1')


def run_train(tmp_path, dataset, data_path, *extra):
    args = ['--dataset', dataset, '--data-path', data_path, '--model_path', str(tmp_path / 'models'),
            '--log_path', str(tmp_path / 'log'), '--vis_log_path', str(tmp_path / 'vis'), *TRAIN, *extra]
    train_script.main(args)
    return tmp_path / 'models'


def run_test(tmp_path, dataset, data_path, resume, *extra):
    results = tmp_path / f'{dataset}_results.json'
    test_script.main(['--dataset', dataset, '--data-path', data_path, '--resume', str(resume),
                      '--results', str(results), *FAST, *extra])
    return json.loads(results.read_text())


def check_results(report, dataset, trials, protocol='release'):
    assert report['dataset'] == dataset and report['protocol'] == protocol
    assert report['trials'] == trials and [t['trial'] for t in report['per_trial']] == trials
    assert set(report['mean']) == set(SCORES)
    for name, scores in report['mean'].items():
        assert set(scores) == SCORE_KEYS
        assert all(0 <= v <= 1 for v in scores.values())
        assert scores['rank1'] <= scores['rank5'] <= scores['rank10'] <= scores['rank20']
        expected = np.mean([t[name]['mAP'] for t in report['per_trial']])
        assert scores['mAP'] == pytest.approx(expected)


def test_train_sysu_two_epochs_then_test(tmp_path, sysu_prepared, capsys):
    models = run_train(tmp_path, 'sysu', sysu_prepared, '--epochs', '2', '--save_epoch', '1')
    out = capsys.readouterr().out
    assert 'running on the CPU (--gpu cpu)' in out
    # two epochs end inside the release's 10-epoch warm-up: said, with the rates actually used
    assert ("warning: --epochs 2 ends inside the 10-epoch warm-up (lr x (epoch + 1) / 10, the release's): the head "
            'trains at 0.001, 0.002 (the rest at 0.1x) and never reaches --lr 0.01') in out
    assert 'Epoch: [1][' in out
    assert 'Validation after epoch 1: SYSU-MM01 all-search, infrared -> visible, 6 queries x 11 gallery (trial 0)\n' in out
    # every progress line shows how long the step waited for data next to the compute time
    steps = [line for line in out.splitlines() if line.startswith('Epoch: [')]
    assert steps and all(re.search(r'\(data wait \d+\.\ds, compute \d+\.\ds\)', line) for line in steps)
    assert 'Epoch: [0][1/5]' in out      # the first step is always shown
    name = 'sysu_p2_n2_lr_0.01_seed_0'
    files = sorted(os.listdir(models))
    assert files == sorted(f'{name}_{s}.t' for s in ('best', 'last'))   # no _epoch_N.t up to epoch 10
    ckpt = read_checkpoint(models / f'{name}_last.t')
    assert ckpt['epoch'] == 1 and ckpt['args']['dataset'] == 'sysu'
    assert ckpt['cmc'].ndim == 1 and 0 <= float(ckpt['mAP']) <= 1
    # Only the resume point holds the optimizer, scaler and random states.
    assert set(ckpt) == {'net', 'epoch', 'cmc', 'mAP', 'mINP', 'se_channels', 'architecture', 'args', 'optimizer',
                         'scaler', 'best', 'rng', 'world_size', 'environment', 'dataset_copy'}
    assert ckpt['architecture'] == {'middle': True, 'mia': [1, 2, 3], 'mfa': True}   # the release's network
    # the release squeeze-excitation's channels, picked on this device, are recorded
    assert ckpt['se_channels'] == tuple(torch.topk(torch.full((1, 6), 0.5), 3).indices[0].tolist())
    assert ckpt['net']['classifier.weight'].shape == (4, 2048)  # 3 train + 1 val identities
    best = read_checkpoint(models / f'{name}_best.t')
    assert set(best) == {'net', 'epoch', 'cmc', 'mAP', 'mINP', 'se_channels', 'architecture', 'args',   # the release's keys,
                         'environment', 'dataset_copy'}                                               # and ours
    assert best['epoch'] == ckpt['best']['epoch'] == 1 and float(best['cmc'][0]) == ckpt['best']['rank1']
    assert all(torch.equal(v, ckpt['net'][k]) for k, v in best['net'].items())

    # Resuming from a checkpoint without optimizer state says so (here with nothing left to train).
    run_train(tmp_path, 'sysu', sysu_prepared, '--epochs', '2', '--resume', str(models / f'{name}_best.t'))
    out = capsys.readouterr().out
    assert (f'warning: {models / name}_best.t holds weights and scores but no optimizer, scaler or random state'
            in out) and "resume from the run's _last.t to continue exactly" in out
    assert 'resuming at epoch 2 of 2' in out
    log = (tmp_path / 'log' / 'sysu_log' / f'{name}_os.txt').read_text()
    assert 'Validation after epoch 1' in log

    report = run_test(tmp_path, 'sysu', sysu_prepared, models / f'{name}_best.t', '--trials', '0,1')
    check_results(report, 'sysu', [0, 1])
    assert report['mode'] == 'all' and report['direction'] == 'infrared -> visible'
    out = capsys.readouterr().out
    # the tables say the direction and sizes (3 test identities: 6 infrared queries, 11 visible gallery images)
    for title in ('SYSU-MM01 all-search, infrared -> visible, 6 queries x 11 gallery (trial 0)',
                  'SYSU-MM01 all-search, infrared -> visible, 6 queries x 11 gallery (trial 1)',
                  'Mean over 2 trials: SYSU-MM01 all-search, infrared -> visible, 6 queries x 11 gallery, protocol release'):
        assert f'\n{title}\n  score' in out, title
    assert ("rows (the release's names): VIS-IR FC = infrared query original vs visible gallery original (bn "
            'features), VIS-MR FC = query original vs gallery middle') in out
    assert f'{models / name}_best.t was trained on: dataset SYSU-MM01, 32x16 images, epoch 1\n' in out
    # the two gallery draws differ, so the scores of at least one score name differ
    assert report['per_trial'][0] != report['per_trial'][1]


def test_resume_reaches_the_same_weights(tmp_path, sysu_prepared):
    """A resumed run ends with the weights of an uninterrupted one, whatever the number of loader
    workers (which persist across epochs): each item's augmentation is seeded from (seed, epoch,
    position), not from a worker's start-up seed."""
    # Epoch 1 is the first one validated, so the resumed run also carries the best score over.
    full = run_train(tmp_path / 'full', 'sysu', sysu_prepared, '--epochs', '3', '--workers', '0')
    part = run_train(tmp_path / 'part', 'sysu', sysu_prepared, '--epochs', '2', '--workers', '2')
    name = 'sysu_p2_n2_lr_0.01_seed_0'
    resumed = run_train(tmp_path / 'part', 'sysu', sysu_prepared, '--epochs', '3', '--workers', '1',
                        '--resume', str(part / f'{name}_last.t'))
    a, b = read_checkpoint(full / f'{name}_last.t'), read_checkpoint(resumed / f'{name}_last.t')
    assert a['epoch'] == b['epoch'] == 2
    for key, value in a['net'].items():
        assert torch.equal(value, b['net'][key]), key
    assert a['best'] == b['best']


def test_sysu_indoor_with_an_untrained_checkpoint(tmp_path, sysu_root, capsys):
    ckpt = tmp_path / 'init.t'
    torch.manual_seed(0)
    save_checkpoint({'net': embed_net(4).state_dict(), 'epoch': -1}, ckpt)
    report = run_test(tmp_path, 'sysu', sysu_root, ckpt, '--mode', 'indoor', '--trials', '3')
    check_results(report, 'sysu', [3])
    assert report['mode'] == 'indoor'
    assert 'WARNING' not in capsys.readouterr().out   # an untrained network is not a collapsed one


def collapsed_net(scale=1e-4):
    """A network that gives every image nearly the same features, as SGD --lr 0.1 from scratch did
    (feature spread about 1e-4): its four stems' batch norms scale every activation down to almost
    nothing, so what follows sees nearly the same input for every image."""
    torch.manual_seed(0)
    net = embed_net(4)
    with torch.no_grad():
        for stem in ('visible_module.visible', 'visible_moduleA.visible', 'thermal_module.thermal',
                     'thermal_moduleA.thermal'):
            bn = net.get_submodule(f'{stem}.bn1')
            bn.weight.mul_(scale)
            bn.bias.fill_(0.1)
    return net


def test_a_collapsed_model_is_reported_loudly(tmp_path, sysu_root, capsys):
    ckpt = tmp_path / 'collapsed.t'
    save_checkpoint({'net': collapsed_net().state_dict(), 'epoch': 30}, ckpt)
    report = run_test(tmp_path, 'sysu', sysu_root, ckpt, '--trials', '0,1')
    out = capsys.readouterr().out
    spread = float(re.search(r'WARNING: the model gives every image nearly the same features \(spread ([-+.e\d]+), '
                             r'below 1e-03', out).group(1))
    assert 0 < spread < 2e-4
    assert 'Likely cause: a learning rate too high for training without ImageNet weights' in out
    check_results(report, 'sysu', [0, 1])   # the scores are still written

    args = train_script.parse_args(['--data-path', sysu_root, *TRAIN])
    train_script.validate(collapsed_net(), sysu_root, 5, args, torch.device('cpu'))
    out = capsys.readouterr().out
    assert out.index('WARNING: the model gives every image nearly the same features') < out.index('Validation after epoch 5')


def test_feature_spread():
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    same = unit(np.ones((5, 8)))
    assert feature_spread({'bn_ori': same, 'bn_mid': same}) == 0
    spread_out = unit(rng.normal(size=(400, 8)))
    assert feature_spread({'bn_ori': same, 'bn_mid': spread_out}) == pytest.approx(1, abs=0.01)
    two = unit(np.array([[1.0, 0], [0, 1]]))
    assert feature_spread({'x': two}) == pytest.approx(np.sqrt(0.5))


@pytest.mark.parametrize('tvsearch', [None, 'True', 'False'])
def test_regdb_test_with_per_trial_checkpoints(tmp_path, regdb_small, regdb_trained, tvsearch, capsys):
    assert os.path.exists(regdb_trained / 'regdb_p2_n2_lr_0.01_seed_0_trial_2_last.t')
    flag = ['--tvsearch'] if tvsearch is None else ['--tvsearch', tvsearch]
    report = run_test(tmp_path, 'regdb', regdb_small,
                      regdb_trained / 'regdb_p2_n2_lr_0.01_seed_0_trial_{trial}_last.t', '--trials', '2', *flag)
    check_results(report, 'regdb', [2])
    assert report['tvsearch'] is (tvsearch != 'False')
    query, gallery = ('thermal', 'visible') if tvsearch != 'False' else ('visible', 'thermal')
    assert report['mode'] is None and report['direction'] == f'{query} -> {gallery}'
    out = capsys.readouterr().out
    assert f'\nRegDB {query} -> {gallery}, 8 queries x 8 gallery (split 2)\n' in out
    assert f'\nMean over 1 trial: RegDB {query} -> {gallery}, 8 queries x 8 gallery, protocol release\n' in out
    # the rows keep the release's names; the line above the tables says what they compare here
    assert f'VIS-IR FC = {query} query original vs {gallery} gallery original' in out
    assert 'WARNING' not in out and 'warning' not in out    # each split's own model, at its own size


@pytest.mark.parametrize('direction', [['--tvsearch', 'False'], ['--tvsearch', 'True'],
                                       ['--protocol', 'standard']])
def test_llcm_test_both_directions(tmp_path, llcm_small, llcm_trained, direction, capsys):
    report = run_test(tmp_path, 'llcm', llcm_small, llcm_trained / 'llcm_p2_n2_lr_0.01_seed_0_last.t',
                      '--trials', '0,1', *direction)
    protocol = 'standard' if 'standard' in direction else 'release'
    check_results(report, 'llcm', [0, 1], protocol)
    # 3 test identities x 1 image per camera: 27 visible (9 cameras) and 24 infrared images (8 cameras)
    release = ('LLCM release "VIS to IR" (infrared -> visible: infrared queries, visible gallery, pool-term quirk; '
               '--protocol standard for visible -> infrared)')
    name, sizes, way = {'False': (release, '24 queries x 27 gallery', 'infrared -> visible'),
                        'True': ('LLCM infrared -> visible', '24 queries x 27 gallery', 'infrared -> visible'),
                        'standard': ('LLCM visible -> infrared', '27 queries x 24 gallery', 'visible -> infrared')
                        }[direction[1]]
    out = capsys.readouterr().out
    assert f'\n{name}, {sizes} (trial 1)\n' in out
    assert f'\nMean over 2 trials: {name}, {sizes}, protocol {protocol}\n' in out
    assert report['mode'] is None and report['direction'] == way
    assert ("ALL = ALL FC + 4 x pool original vs original, the release's LLCM quirk" in out) is (direction[1] == 'False')


def test_test_checks_what_the_checkpoint_was_trained_on(tmp_path, regdb_small, regdb_trained, llcm_trained, capsys,
                                                        monkeypatch):
    sizes = []   # the image size of every embedding test.py asks for
    real_embed = test_script.embed
    monkeypatch.setattr(test_script, 'embed', lambda *a, **kw: sizes.append((kw['img_h'], kw['img_w'])) or
                        real_embed(*a, **kw))
    split2 = regdb_trained / 'regdb_p2_n2_lr_0.01_seed_0_trial_2_last.t'
    run = lambda resume, *extra: test_script.main(['--dataset', 'regdb', '--data-path', regdb_small, '--resume',
                                                   str(resume), '--workers', '0', '--gpu', '', *extra])
    # No --img_h/--img_w: the checkpoint's own size (it was trained at 32x16), said so. Another RegDB
    # split than the one it was trained on, even alone: a loud warning.
    run(split2, '--trial', '1')
    out = capsys.readouterr().out
    assert sizes == [(32, 16)]
    assert f'{split2} was trained on: dataset RegDB split 2, 32x16 images, epoch 0\n' in out
    assert "testing at 32x16: the checkpoint's own size; --img_h/--img_w choose another" in out
    assert ('!' * 100 + f'\nWARNING: {split2} was trained on RegDB split 2 and is tested on split(s) 1.') in out
    assert "about half of another split's test identities were in this model's training" in out
    # Its own split at another size: no split warning, a size warning.
    run(split2, '--trial', '2', '--img_h', '48', '--img_w', '24')
    out = capsys.readouterr().out
    assert sizes[-1] == (48, 24) and 'WARNING' not in out
    assert f'warning: testing at 48x24 but {split2} was trained at 32x16' in out
    # Another dataset's checkpoint: a one-line note, and no split warning.
    llcm = llcm_trained / 'llcm_p2_n2_lr_0.01_seed_0_last.t'
    run(llcm, '--trial', '1')
    out = capsys.readouterr().out
    assert f'note: {llcm} was trained on LLCM; this is a cross-dataset test on RegDB\n' in out and 'WARNING' not in out


def test_release_checkpoints_say_they_store_no_training_arguments():
    info = trained_on({'net': {}, 'epoch': 37})
    assert info == {'dataset': None, 'trial': None, 'img_h': None, 'img_w': None, 'epoch': 37}
    assert describe_training(info) == ('dataset unknown, image size unknown, epoch 37 (the checkpoint stores no '
                                       "training arguments, as the release's do not)")
    assert RELEASE_SIZE == (384, 192)


def test_llcm_release_roles_and_pool_quirk(llcm_root):
    release = build_problem('llcm', llcm_root, 0, protocol='release')
    standard = build_problem('llcm', llcm_root, 0, protocol='standard')
    # release "VIS to IR": sampled infrared queries, every visible image in the gallery
    assert release.query.paths == standard.gallery.paths and release.gallery.paths == standard.query.paths
    assert all('test_nir' in p for p in release.query.paths)
    assert release.llcm_pool_quirk and not standard.llcm_pool_quirk
    rng = np.random.default_rng(0)
    feats = lambda n: {k: rng.normal(size=(n, 8)) for k in ('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')}
    q, g = feats(3), feats(5)
    quirky = score_similarities(q, g, llcm_pool_quirk=True)
    proper = score_similarities(q, g)
    bn = sum(x @ y.T for x in (q['bn_ori'], q['bn_mid']) for y in (g['bn_ori'], g['bn_mid']))
    np.testing.assert_allclose(proper['ALL FC'], bn)
    np.testing.assert_allclose(quirky['ALL'], bn + 4 * q['pool_ori'] @ g['pool_ori'].T)
    pool = sum(x @ y.T for x in (q['pool_ori'], q['pool_mid']) for y in (g['pool_ori'], g['pool_mid']))
    np.testing.assert_allclose(proper['ALL'], bn + pool)
    np.testing.assert_allclose(proper['VIS-MR FC'], q['bn_ori'] @ g['bn_mid'].T)
    np.testing.assert_allclose(proper['MIS-IR FC'], q['bn_mid'] @ g['bn_ori'].T)


def test_shared_gallery_images_are_embedded_once(sysu_root, monkeypatch):
    calls = []
    real_add = FeatureBank.add

    def counting_add(self, paths, modal, what=None):
        before = len(self.rows)
        real_add(self, paths, modal, what)
        calls.append(len(self.rows) - before)
    monkeypatch.setattr(FeatureBank, 'add', counting_add)
    torch.manual_seed(0)
    net = embed_net(6)
    trials = list(range(10))
    evaluate(net, 'sysu', sysu_root, trials, torch.device('cpu'), img_h=32, img_w=16, workers=0)
    galleries = {p for t in trials for p in build_problem('sysu', sysu_root, t).gallery.paths}
    queries = build_problem('sysu', sysu_root, 0).query.paths
    assert sum(calls) == len(galleries) + len(queries)
    assert len(galleries) < 10 * len(build_problem('sysu', sysu_root, 0).gallery.paths)


def test_tvsearch_parsing():
    parse = lambda *a: test_script.parse_args(['--resume', 'x', *a]).tvsearch
    assert parse() is False
    assert parse('--tvsearch') is True
    assert parse('--tvsearch', 'True') is True
    assert parse('--tvsearch', 'False') is False
    assert parse('--tvsearch=false') is False
    with pytest.raises(SystemExit):
        parse('--tvsearch', 'maybe')
    assert train_script.parse_args(['--tvsearch', 'True']).tvsearch is True


def test_periodic_checkpoints_follow_the_release_rule():
    kept = lambda save_epoch: [e for e in range(121) if keeps_epoch(e, save_epoch)]
    assert kept(20) == [20, 40, 60, 80, 100, 120]
    assert kept(5) == [15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100, 105, 110, 115, 120]
    assert kept(1)[:2] == [11, 12]


def test_learning_rate_schedule():
    lr = [lr_at(e, 0.1) for e in (0, 9, 10, 19, 20, 59, 60, 89, 90, 120)]
    assert lr == pytest.approx([0.01, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert lr_at(60, 1.0) == 0.01 and lr_at(90, 1.0) == 0.001   # the release's very factors
    # --warmup-epochs 2 --lr-steps 8: the demo's ten epochs
    assert [lr_at(e, 0.02, 2, (8,)) for e in range(10)] == pytest.approx([0.01] + [0.02] * 7 + [0.002] * 2)
    assert lr_at(5, 0.1, 10, ()) == pytest.approx(0.06) and lr_at(500, 0.1, 1, ()) == 0.1
    with pytest.raises(argparse.ArgumentTypeError, match="expected increasing epoch numbers such as 20,60,90, got '8,5'"):
        parse_epochs('8,5')
    assert parse_epochs('') == () and parse_epochs('3, 7') == (3, 7)


def test_trials_flag_is_checked():
    assert test_script.parse_trials(None, 'regdb') == list(range(1, 11))
    assert test_script.parse_trials('0,9', 'sysu') == [0, 9]
    with pytest.raises(ReIDError, match='within 1..10'):
        test_script.parse_trials('0', 'regdb')


def script(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_missing_data_root_is_a_clear_error_and_leaves_no_log(tmp_path):
    run = script('train.py', '--dataset', 'llcm', '--data-path', str(tmp_path / 'nowhere'), '--gpu', '',
                 '--pretrained', 'none', '--log_path', str(tmp_path / 'log'))
    assert run.returncode == 2 and run.stdout == ''
    assert run.stderr == f'error: --data-path {tmp_path / "nowhere"} does not exist; expected the llcm dataset ' \
                         'root folder (see the README for its layout)\n'
    assert not (tmp_path / 'log').exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path, sysu_root):
    run = script('test.py', '--dataset', 'sysu', '--data-path', sysu_root, '--gpu', '',
                 '--resume', 'absent_best.t', '--model_path', str(tmp_path))
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert 'checkpoint not found: absent_best.t' in run.stderr


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path, sysu_root):
    other = tmp_path / 'resnet.t'
    torch.save({'net': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, other)
    run = script('test.py', '--dataset', 'sysu', '--data-path', sysu_root, '--gpu', '', '--resume', str(other))
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert 'resnet.t' in run.stderr and 'not an IFALNet checkpoint' in run.stderr


def test_test_uses_the_channels_the_checkpoint_stores(tmp_path, sysu_prepared, capsys):
    """A checkpoint trained where torch.topk broke the tie differently (simulated by storing other
    channels) is tested with its own channels on this device, and --se-channels overrides them."""
    models = run_train(tmp_path, 'sysu', sysu_prepared, '--epochs', '1')
    ckpt = read_checkpoint(models / 'sysu_p2_n2_lr_0.01_seed_0_last.t')
    ckpt['se_channels'] = (0, 2, 1)
    forced = tmp_path / 'forced.t'
    save_checkpoint(ckpt, forced)
    capsys.readouterr()
    net = load_model(str(forced), torch.device('cpu'))
    assert net.se_channels == (0, 2, 1)
    assert 'middle-modality channels: 0,2,1 (stored in the checkpoint)' in capsys.readouterr().out
    own = load_model(str(forced), torch.device('cpu'), se_channels=(3, 5, 4))
    assert own.se_channels == (3, 5, 4)
    out = capsys.readouterr().out
    assert 'trained with middle-modality channels 0,2,1; using --se-channels 3,5,4' in out
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():   # the trained generator's channels differ, so the features do too
        assert not torch.allclose(net.eval()(x, x, x, x, 1)[1], own.eval()(x, x, x, x, 1)[1])

    report = run_test(tmp_path, 'sysu', sysu_prepared, forced, '--trials', '0')
    assert 'middle-modality channels: 0,2,1 (stored in the checkpoint)' in capsys.readouterr().out
    check_results(report, 'sysu', [0])
    # a release checkpoint stores none: this device's order, or the flag's
    del ckpt['se_channels']
    release = tmp_path / 'release.t'
    save_checkpoint({'net': ckpt['net'], 'epoch': 0}, release)
    assert load_model(str(release), torch.device('cpu')).se_channels == (3, 5, 4)
    assert "this device's torch.topk tie order; the checkpoint stores none" in capsys.readouterr().out
    assert load_model(str(release), torch.device('cpu'), se_channels=(1, 4, 0)).se_channels == (1, 4, 0)


def test_se_channels_flag_is_checked(tmp_path, capsys):
    assert test_script.parse_args(['--resume', 'x', '--se-channels', '5,0,3']).se_channels == (5, 0, 3)
    assert test_script.parse_args(['--resume', 'x']).se_channels is None
    assert train_script.parse_args(['--se-channels', '1,2,3']).se_channels == (1, 2, 3)
    for bad in ('1,2', '1,1,2', '0,1,6', 'a,b,c'):   # parsed here: the usage error and its exit status 2
        with pytest.raises(SystemExit) as stop:
            test_script.parse_args(['--resume', 'x', '--se-channels', bad])
        assert stop.value.code == 2 and 'three distinct channel indices in 0..5' in capsys.readouterr().err
    run = script('test.py', '--resume', 'x', '--se-channels', '1,2,3,4')   # and once as a user runs it
    assert run.returncode == 2 and 'three distinct channel indices in 0..5' in run.stderr
    assert 'Traceback' not in run.stderr
    working = tmp_path / 'working.t'
    save_checkpoint({'net': embed_net(4, working_se=True).state_dict()}, working)
    with pytest.raises(ReIDError, match='--se-channels applies to the release squeeze-excitation only'):
        load_model(str(working), torch.device('cpu'), se_channels=(0, 1, 2))


def test_amp_dtype_per_device(capsys, monkeypatch):
    cpu = torch.device('cpu')
    assert autocast_dtype(False, cpu) is None
    # a CPU without native bfloat16: ignored, with a note
    monkeypatch.setattr(device_module, 'cpu_has_native_bf16', lambda: False)
    assert autocast_dtype(True, cpu) is None
    assert '--amp is ignored on this CPU (no native bfloat16' in capsys.readouterr().out
    # with it (AVX512-BF16 or AMX): bfloat16
    monkeypatch.setattr(device_module, 'cpu_has_native_bf16', lambda: True)
    assert autocast_dtype(True, cpu) == torch.bfloat16
    assert 'bfloat16 autocast' in capsys.readouterr().out
    # on CUDA: bfloat16 where the GPU supports it, else float16 (with the gradient scaler)
    cuda = torch.device('cuda')
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    assert autocast_dtype(True, cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: False)
    assert autocast_dtype(True, cuda) == torch.float16


def test_the_head_stays_float32_under_autocast():
    """Pooling, BN neck, classifier and l2-normalisation run in float32 under bfloat16 autocast, and
    the eval features stay close to the float32 ones (bfloat16-rounded features reorder rankings)."""
    torch.manual_seed(0)
    net = embed_net(5)
    x = torch.randn(2, 3, 32, 16)
    net.eval()
    with torch.no_grad():
        exact = net(x, x, x, x, 1)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            mixed = net(x, x, x, x, 1)
    for a, b in zip(exact, mixed):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.norm(dim=1), torch.ones(4))       # normalised in float32
        assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    net.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pool, logits = net(x, x, x, x, 0)
    assert pool.dtype == logits.dtype == torch.float32


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mixed_precision_training_path_runs_on_the_cpu(sysu_prepared, dtype, capsys):
    """The CUDA --amp code path (autocast, float32 losses, GradScaler for float16), exercised with
    CPU autocast: the losses are finite float32 numbers and the weights move."""
    args = train_script.parse_args(['--batch-size', '2', '--num_pos', '2', '--lr', '0.01', '--print-freq', '100'])
    trainset = build_train_set('sysu', sysu_prepared, 32, 16)
    batches = TrainBatchSampler(trainset.train_color_label, trainset.train_thermal_label, 2, 2, seed=0)
    loader = make_train_loader(trainset, batches, 0, torch.device('cpu'))
    torch.manual_seed(0)
    net = embed_net(4).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net, args)
    # GradScaler's default start (65536) overflows float16 on this fresh model and backs off over
    # ~9 skipped steps, as documented; this epoch has 5, so start lower.
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 8, enabled=dtype == torch.float16)
    before = net.classifier.weight.detach().clone()
    criteria = (OriTripletLoss(4, 0.3), TcaLoss())
    stats = train_epoch(net, loader, optimizer, scaler, criteria, 5, args, torch.device('cpu'), dtype)
    assert all(np.isfinite(stats[k]) for k in ('loss', 'id', 'tri', 'tca'))
    assert not torch.equal(before, net.classifier.weight) and net.classifier.weight.dtype == torch.float32
    if dtype == torch.float16:
        assert scaler.get_scale() > 0 and scaler.state_dict()
    assert 'Epoch: [5][5/5]' in capsys.readouterr().out
