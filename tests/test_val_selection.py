"""train.py --select val: model selection on held-out identities (heldout.py), never on the test set."""
import os
import pickle
import random
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import data_loader
import process_sysu
import train as train_script
from data_loader import TestData, build_train_set, count_train_identities
from data_manager import layout_files
from eval_metrics import eval_llcm, llcm_removal
from ifalnet import val_selection as heldout
from ifalnet.checkpoints import describe_training, load_model, read_checkpoint, trained_on
from ifalnet.run_files import run_name
from ifalnet.slow_metrics import reference_sysu
from ifalnet.toy_datasets import make_regdb, make_sysu
from model import Modal
from utils import ReIDError

SIZE = ['--img_h', '32', '--img_w', '16']
TRAIN = SIZE + ['--workers', '0', '--test-batch', '32', '--gpu', '', '--pretrained', 'none', '--batch-size', '2',
                '--num_pos', '2', '--lr', '0.01', '--print-freq', '5']
NAME = 'sysu_p2_n2_lr_0.01_seed_0_val'


def run_args(tmp_path, dataset, data_path, *extra):
    dataset = ['--dataset', dataset] if dataset else []
    return [*dataset, '--data-path', str(data_path), '--model_path', str(tmp_path / 'models'),
            '--log_path', str(tmp_path / 'log'), '--vis_log_path', str(tmp_path / 'vis'), *TRAIN, *extra]


@pytest.fixture(scope='module')
def sysu_without_test_set(tmp_path_factory):
    """SYSU-MM01 with train ids 1-3 and val ids 4, 5, prepared, then its test set removed (the test
    ids' folders and exp/test_id.txt): a run that read any of it would fail."""
    root = make_sysu(tmp_path_factory.mktemp('sysu_val'), train_ids=(1, 2, 3), val_ids=(4, 5), test_ids=(6, 7),
                     images_per_cam=1, size=(32, 16))
    process_sysu.prepare_sysu(root)
    for cam in range(1, 7):
        for pid in (6, 7):
            shutil.rmtree(os.path.join(root, f'cam{cam}', '%04d' % pid))
    os.remove(os.path.join(root, 'exp', 'test_id.txt'))
    return root


@pytest.fixture(scope='module')
def sysu_val_run(tmp_path_factory, sysu_without_test_set):
    """Three epochs with --select val, recording the array rows of every training item and keeping a
    copy of the resume point written after epoch 1. Its checkpoints (about 1 GB) go at teardown."""
    tmp = tmp_path_factory.mktemp('sysu_val_run')
    items, kept = [], tmp / 'epoch1_last.t'
    get_item, save = data_loader.TrainData.__getitem__, train_script.save_checkpoint

    def recording_get_item(self, item):
        color, thermal, _ = item
        items.append((self.rows['rgb'][color], self.rows['ir'][thermal]))
        return get_item(self, item)

    def keeping_save(ckpt, path):
        save(ckpt, path)
        if str(path).endswith('_last.t') and ckpt['epoch'] == 1:
            shutil.copy(path, kept)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data_loader.TrainData, '__getitem__', recording_get_item)
        mp.setattr(train_script, 'save_checkpoint', keeping_save)
        train_script.main(run_args(tmp, 'sysu', sysu_without_test_set, '--epochs', '3', '--select', 'val'))
    log = (tmp / 'log' / 'sysu_log' / f'{NAME}_os.txt').read_text()
    yield tmp / 'models', log, items, kept
    shutil.rmtree(tmp)


def test_sysu_val_ids_are_held_out_and_the_test_set_is_not_read(sysu_without_test_set, sysu_val_run):
    models, log, items, _ = sysu_val_run
    assert sorted(os.listdir(models)) == [f'{NAME}_best.t', f'{NAME}_last.t']
    assert ('--select val: 2 of the 5 SYSU-MM01 training identities held out for model selection (ids 4,5), 3 left '
            'for training; validation on 4 infrared queries x 8 visible gallery images') in log
    assert 'sysu: 3 training identities, 12 visible and 6 infrared images' in log
    for epoch in (1, 2):
        assert (f'Validation on the held-out identities after epoch {epoch}: SYSU-MM01 all-search, infrared -> '
                'visible, 4 queries x 8 gallery (held-out ids 4,5)\n') in log
    last = read_checkpoint(models / f'{NAME}_last.t')
    assert last['held_out'] == [4, 5] and last['args']['select'] == 'val'
    assert last['net']['classifier.weight'].shape == (3, 2048)   # the identities left for training
    # The items of every batch, by their rows in the arrays on disk: none of the held-out ids
    # (labels 3 and 4 of train + val ids 1..5), and every training identity.
    labels = {m: np.load(os.path.join(sysu_without_test_set, f'train_{m}_resized_label.npy')) for m in ('rgb', 'ir')}
    seen = {(int(labels['rgb'][c]), int(labels['ir'][t])) for c, t in items}
    assert len(items) == 3 * 4 * 4 and {c for c, _ in seen} == {t for _, t in seen} == {0, 1, 2}


def test_best_follows_the_validation_rank1_of_the_held_out_identities(sysu_without_test_set, sysu_val_run):
    models, log, _, _ = sysu_val_run
    tables = re.findall(r'Validation on the held-out identities after epoch (\d+):.*?\n  ALL +([\d.]+)%', log, re.S)
    rank1 = {int(e): float(r) for e, r in tables}
    assert sorted(rank1) == [1, 2]
    best_epoch = max(rank1, key=lambda e: (rank1[e], -e))   # the first epoch with the highest Rank-1
    best, last = read_checkpoint(models / f'{NAME}_best.t'), read_checkpoint(models / f'{NAME}_last.t')
    assert best['epoch'] == last['best']['epoch'] == best_epoch and best['held_out'] == [4, 5]
    assert 100 * float(best['cmc'][0]) == pytest.approx(rank1[best_epoch], abs=0.005)
    # The weights of _best.t, scored again without the evaluation engine on the images of ids 4 and 5:
    # the infrared images of cam3 and cam6 against the visible images of cam1, 2, 4, 5 (one per
    # folder, so the draw has no choice), ALL = the bn and pool dot products of original and middle.
    net = load_model(models / f'{NAME}_best.t', torch.device('cpu'))
    net.eval()

    def features(cams, modal):
        paths = [os.path.join(sysu_without_test_set, f'cam{c}', pid, name) for pid in ('0004', '0005')
                 for c in cams for name in sorted(os.listdir(os.path.join(sysu_without_test_set, f'cam{c}', pid)))]
        x = torch.stack([TestData(paths, [0] * len(paths), 32, 16)[i][0] for i in range(len(paths))])
        with torch.no_grad():
            pool, bn = (f.double() for f in net(x, x, x, x, modal))
        n = len(paths)
        ids, cam_ids = zip(*[(int(p.split(os.sep)[-2]), int(p.split(os.sep)[-3][3:])) for p in paths])
        return (pool[:n], pool[n:], bn[:n], bn[n:]), np.array(ids), np.array(cam_ids)

    (qp, qpm, qb, qbm), q_ids, q_cams = features((3, 6), Modal.THERMAL)
    (gp, gpm, gb, gbm), g_ids, g_cams = features((1, 2, 4, 5), Modal.VISIBLE)
    sim = sum(a @ b.T for q, g in (((qb, qbm), (gb, gbm)), ((qp, qpm), (gp, gpm))) for a in q for b in g)
    cmc, _, _ = reference_sysu(-sim.numpy(), q_ids, g_ids, q_cams, g_cams)
    assert float(best['cmc'][0]) == pytest.approx(cmc[0])


def test_a_resumed_select_val_run_ends_with_the_same_weights(tmp_path, sysu_without_test_set, sysu_val_run):
    models, _, _, kept = sysu_val_run
    train_script.main(run_args(tmp_path, 'sysu', sysu_without_test_set, '--epochs', '3', '--select', 'val',
                               '--resume', str(kept)))
    a, b = read_checkpoint(models / f'{NAME}_last.t'), read_checkpoint(tmp_path / 'models' / f'{NAME}_last.t')
    assert a['epoch'] == b['epoch'] == 2 and a['best'] == b['best'] and b['held_out'] == [4, 5]
    for key, value in a['net'].items():
        assert torch.equal(value, b['net'][key]), key
    shutil.rmtree(tmp_path / 'models')   # 600 MB


def test_sysu_training_set_without_the_val_ids_survives_pickling(sysu_without_test_set):
    """Loader workers started by spawn receive the set pickled: the memory maps are mapped again and
    the held-out rows stay left out."""
    data = build_train_set('sysu', sysu_without_test_set, 32, 16, held_out=[3, 4])
    labels = np.load(os.path.join(sysu_without_test_set, 'train_ir_resized_label.npy'))
    assert data.rows['ir'].tolist() == np.flatnonzero(labels < 3).tolist()
    assert data.train_thermal_label.tolist() == labels[labels < 3].tolist()
    copy = pickle.loads(pickle.dumps(data))
    images = np.load(os.path.join(sysu_without_test_set, 'train_ir_resized_img.npy'))
    for i, row in enumerate(data.rows['ir']):
        assert np.array_equal(copy.train_thermal_image[i], images[row])
    assert len(copy.train_thermal_image) == len(data.rows['ir']) == 6


def test_without_select_val_the_test_set_is_required(tmp_path, sysu_without_test_set):
    with pytest.raises(ReIDError, match=r'is not the SYSU-MM01 root: no exp/test_id\.txt in it'):
        train_script.main(run_args(tmp_path, 'sysu', sysu_without_test_set, '--epochs', '1'))
    assert not os.listdir(tmp_path)
    assert layout_files('sysu', training=True, test=False) == ['exp/train_id.txt', 'exp/val_id.txt']
    assert layout_files('llcm', training=True, test=False) == ['idx/train_vis.txt', 'idx/train_nir.txt']
    assert layout_files('regdb', (3,), training=True, test=False) == ['idx/train_visible_3.txt',
                                                                      'idx/train_thermal_3.txt']


def test_run_name_says_val_only_for_select_val():
    args = train_script.parse_args(['--dataset', 'regdb', '--trial', '4'])
    assert run_name(args) == 'regdb_p4_n4_lr_0.1_seed_0_trial_4' and args.select == 'test'
    args = train_script.parse_args(['--dataset', 'regdb', '--trial', '4', '--select', 'val'])
    assert run_name(args) == 'regdb_p4_n4_lr_0.1_seed_0_val_trial_4'


# ------------------------------------------------------------------------------ RegDB and LLCM

def test_default_count_is_a_tenth_rounded_at_least_one():
    assert [heldout.default_count(n) for n in (1, 5, 14, 15, 206, 395, 713)] == [1, 1, 1, 2, 21, 40, 71]


def index_lines(path):
    with open(path) as f:
        return [line.rsplit(maxsplit=1) for line in f if line.strip()]


@pytest.mark.parametrize('dataset', ['regdb', 'llcm'])
def test_listed_datasets_hold_out_seeded_identities(dataset, regdb_root, llcm_root):
    root = regdb_root if dataset == 'regdb' else llcm_root
    random.seed(123), np.random.seed(123)   # the choice does not depend on the global generators
    held = heldout.held_out_identities(dataset, root, trial=2, count=2)
    random.seed(5), np.random.seed(5)
    assert heldout.held_out_identities(dataset, root, trial=2, count=2) == held
    assert held.total == 5 and len(held.labels) == 2 and held.labels == sorted(held.labels)
    assert len(heldout.held_out_identities(dataset, root, trial=2).labels) == 1   # 10% of 5, at least 1
    color_index, thermal_index = ((f'{root}/idx/train_visible_2.txt', f'{root}/idx/train_thermal_2.txt')
                                  if dataset == 'regdb' else (f'{root}/idx/train_vis.txt', f'{root}/idx/train_nir.txt'))
    lines = index_lines(color_index)
    # the recorded ids are the identity folders of the held-out labels
    assert held.ids == sorted({int(rel.split('/')[-2]) for rel, label in lines if int(label) in held.labels})
    for bad in (0, 5):
        with pytest.raises(ReIDError, match=rf'--val-ids {bad}: expected 1 to 4 of the 5 training identities'):
            heldout.held_out_identities(dataset, root, trial=2, count=bad)

    # The validation problem: every second-modality image of those labels a query, one visible image
    # per identity (and LLCM camera, from the path) in the gallery, drawn from those labels' images.
    problem = heldout.validation_problem(dataset, root, held, trial=2)
    queries = [os.path.join(root, rel) for rel, label in index_lines(thermal_index) if int(label) in held.labels]
    assert problem.query.paths == queries and problem.query.modal == Modal.THERMAL
    visible = {os.path.join(root, rel): int(label) for rel, label in lines if int(label) in held.labels}
    assert set(problem.gallery.paths) <= set(visible) and problem.gallery.modal == Modal.VISIBLE
    assert problem.gallery.ids.tolist() == [visible[p] for p in problem.gallery.paths]
    camera = (lambda p: int(p.split(os.sep)[-3][3:])) if dataset == 'llcm' else (lambda p: 0)
    pairs = [(visible[p], camera(p)) for p in problem.gallery.paths]
    assert pairs == sorted(set(pairs)) and set(pairs) == {(label, camera(p)) for p, label in visible.items()}
    if dataset == 'llcm':
        assert problem.gallery.cams.tolist() == [c for _, c in pairs] and problem.removal is llcm_removal
        # Scored with LLCM's metric: the same numbers as eval_llcm on the problem's ids and cameras.
        q, g = problem.query, problem.gallery
        distmat = np.random.default_rng(0).random((len(q.paths), len(g.paths)))
        for got, expected in zip(problem.metric(distmat, q, g), eval_llcm(distmat, q.ids, g.ids, q.cams, g.cams)):
            assert np.array_equal(got, expected)
    else:
        assert problem.gallery.cams is None and problem.query.cams is None

    # The training set without them: the other labels' images, renumbered 0..K'-1 in order.
    trainset = build_train_set(dataset, root, 32, 16, trial=2, held_out=held.labels)
    kept = [(os.path.join(root, rel), int(label)) for rel, label in lines if int(label) not in held.labels]
    renumber = {old: new for new, old in enumerate(sorted({label for _, label in kept}))}
    assert trainset.train_color_label.tolist() == [renumber[label] for _, label in kept]
    expected = np.stack([np.asarray(Image.open(p).convert('RGB').resize((16, 32), Image.Resampling.LANCZOS))
                         for p, _ in kept])
    assert np.array_equal(trainset.train_color_image, expected)
    assert count_train_identities(dataset, root, 2, held.labels) == 3 == len(np.unique(trainset.train_thermal_label))


@pytest.fixture(scope='module')
def regdb_without_test_set(tmp_path_factory):
    root = make_regdb(tmp_path_factory.mktemp('regdb_val'), num_ids=8, images_per_id=2, size=(32, 16), trials=1)
    for name in ('test_visible_1.txt', 'test_thermal_1.txt'):
        os.remove(os.path.join(root, 'idx', name))
    return root


def test_regdb_select_val_trains_and_validates_without_the_test_lists(tmp_path, regdb_without_test_set, capsys):
    argv = run_args(tmp_path, 'regdb', regdb_without_test_set, '--epochs', '1', '--select', 'val', '--val-ids', '1')
    train_script.main(argv)
    out = capsys.readouterr().out
    held = heldout.held_out_identities('regdb', regdb_without_test_set, 1, 1)
    assert (f'--select val: 1 of the 4 RegDB training identities held out for model selection (ids {held.ids[0]}), 3 '
            'left for training; validation on 2 thermal queries x 1 visible gallery images') in out
    name = 'regdb_p2_n2_lr_0.01_seed_0_val_trial_1'
    last = read_checkpoint(tmp_path / 'models' / f'{name}_last.t')
    assert last['held_out'] == held.ids and last['net']['classifier.weight'].shape == (3, 2048)
    # its validation (one epoch is not validated: scored here with the run's own function)
    args = train_script.parse_args(argv)
    selection = heldout.selection('regdb', regdb_without_test_set, 1, 1, batch_size=2)
    net = load_model(tmp_path / 'models' / f'{name}_last.t', torch.device('cpu'))
    cmc, mAP, _ = train_script.validate(net, regdb_without_test_set, 0, args, torch.device('cpu'), selection=selection)
    assert len(cmc) == 1 and 0 <= mAP <= 1   # one gallery image
    assert (f'Validation on the held-out identities after epoch 0: RegDB thermal -> visible, 2 queries x 1 gallery '
            f'(held-out ids {held.ids[0]})\n') in capsys.readouterr().out
    # Resuming it with other held-out identities, or without --select val, is refused before anything runs.
    for extra, message in ((['--select', 'val', '--val-ids', '2'], 'but this run holds out'),
                           ([], 'no idx/test_visible_1.txt')):
        with pytest.raises(ReIDError, match=message):
            train_script.main(run_args(tmp_path, 'regdb', regdb_without_test_set, '--epochs', '3', *extra,
                                       '--resume', str(tmp_path / 'models' / f'{name}_last.t')))
    shutil.rmtree(tmp_path / 'models')   # 600 MB


@pytest.mark.parametrize('extra, message', [
    (['--dataset', 'regdb', '--val-ids', '2'], '--val-ids 2 applies to --select val only'),
    (['--dataset', 'sysu', '--select', 'val', '--val-ids', '2'], '--val-ids applies to RegDB and LLCM; SYSU-MM01 '
                                                                  'holds out the ids of its own exp/val_id.txt'),
    (['--dataset', 'regdb', '--select', 'val', '--val-ids', '4'], '--select val holds out 4 of the 5 training '
                                                                  'identities, leaving 1, fewer than --batch-size 2'),
])
def test_select_flags_are_checked_before_anything_is_written(tmp_path, regdb_root, sysu_without_test_set, extra,
                                                              message):
    root = regdb_root if 'regdb' in extra else sysu_without_test_set
    with pytest.raises(ReIDError) as err:
        train_script.main(run_args(tmp_path, None, root, '--epochs', '1', *extra))
    assert message in str(err.value)
    assert not os.listdir(tmp_path)


def test_test_py_says_a_checkpoint_was_selected_on_held_out_identities(sysu_val_run):
    models = sysu_val_run[0]
    info = trained_on(read_checkpoint(models / f'{NAME}_best.t'))
    assert info['held_out'] == 2
    assert describe_training(info).endswith(', selected on 2 held-out training identities (--select val)')
    assert 'held_out' not in trained_on({'net': {}, 'epoch': 3, 'args': {'dataset': 'sysu'}})   # --select test
