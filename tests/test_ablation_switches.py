"""Component switches (issue 19, item 1): the network without the middle modality, MIA on any body
layers, MFA off, and the loss switches; checkpoints of each rebuild the same network."""
import itertools
import json
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import test as test_script
import train as train_script
import visualize
from ifalnet.checkpoints import (checkpoint_architecture, checkpoint_model_args, load_model, read_checkpoint,
                                 save_checkpoint)
from ifalnet.deploy import Embedder
from ifalnet.flags import architecture, loss_switches, parse_mia
from ifalnet.report_text import NO_MIDDLE_NOTE, format_table
from ifalnet.run_files import run_name
from ifalnet.scoring import score_similarities, score_vectors
from loss import OriTripletLoss, TcaLoss, total_loss
from model import MIA, Modal, embed_net
from recipe import make_optimizer
from utils import ReIDError

H, W = 32, 16
GENERATOR = ('encode1.', 'fc1.', 'bn1.', 'encode2.', 'fc2.', 'bn2.', 'encode3.', 'SEnet.', 'decode.')
MIDDLE_STEMS = ('visible_moduleA.', 'thermal_moduleA.')
MIA_SETS = [(), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]
ALL_COMBINATIONS = list(itertools.product([True, False], MIA_SETS, [True, False]))


@pytest.fixture(scope='module')
def full_shapes():
    with torch.device('meta'):
        return {k: p.numel() for k, p in embed_net(7).named_parameters()}


def implied_names(full, middle, mia, mfa):
    """The full model's parameters that the switches keep, by the rule of the issue (an independent
    statement of it): no generator or middle stems without the middle modality, no MIA<i> for a layer
    off, no conv_narrow in a MIA whose next layer has none, no MFA when off."""
    def kept(name):
        if not middle and name.startswith(GENERATOR + MIDDLE_STEMS):
            return False
        for i in (1, 2, 3):
            if name.startswith(f'MIA{i}.') and (i not in mia or (name.startswith(f'MIA{i}.conv_narrow')
                                                                  and i + 1 not in mia)):
                return False
        return mfa or not name.startswith('MFA.')
    return {k for k in full if kept(k)}


@pytest.mark.parametrize('middle, mia, mfa', ALL_COMBINATIONS)
def test_every_combination_builds_with_the_parameters_its_switches_imply(full_shapes, middle, mia, mfa):
    with torch.device('meta'):
        net = embed_net(7, middle=middle, mia=mia, mfa=mfa)
    names = {k: p.numel() for k, p in net.named_parameters()}
    expected = implied_names(full_shapes, middle, mia, mfa)
    assert set(names) == expected
    assert sum(names.values()) == sum(full_shapes[k] for k in expected)
    assert net.architecture() == {'middle': middle, 'mia': list(mia), 'mfa': mfa}
    for i in (1, 2, 3):
        assert hasattr(net, f'MIA{i}') == (i in mia)
    assert hasattr(net, 'MFA') == mfa
    assert all(hasattr(net, m.rstrip('.')) == middle for m in GENERATOR + MIDDLE_STEMS)
    assert len(net.stems()) == (4 if middle else 2)


def test_the_baseline_has_two_stems_and_no_generator(full_shapes):
    with torch.device('meta'):
        net = embed_net(7, middle=False)
    generator = sum(v for k, v in full_shapes.items() if k.startswith(GENERATOR))
    stem = sum(v for k, v in full_shapes.items() if k.startswith('visible_moduleA.'))
    assert generator > 0 and stem > 0
    assert sum(p.numel() for p in net.parameters()) == sum(full_shapes.values()) - generator - 2 * stem
    assert [m.name for m in net.stems()] == ['visible', 'thermal'] and net.se_channels is None
    with pytest.raises(ValueError, match='no middle modality'):
        net.middle_modality(None, None, Modal.VISIBLE)


@pytest.mark.parametrize('mia', [(0,), (1, 1), (4,)])
def test_bad_mia_layers_are_refused(mia):
    with pytest.raises(ValueError, match='1, 2, 3'):
        embed_net(7, mia=mia)


def test_mia_flag_parsing(capsys):
    assert parse_mia('1,2,3') == (1, 2, 3) and parse_mia('none') == ()
    assert train_script.parse_args(['--mia', '3,1']).mia == (1, 3)   # sorted by the record
    with pytest.raises(Exception, match='1, 2, 3'):
        parse_mia('a')
    for bad in ('0', '1,1', '4'):   # integers, but not distinct layers among 1, 2, 3: the record refuses them
        with pytest.raises(SystemExit) as stop:
            train_script.parse_args(['--mia', bad])
        assert stop.value.code == 2
        assert 'error: argument --mia: expected distinct body layers among 1, 2, 3' in capsys.readouterr().err


def test_mia_attends_the_original_group_alone_without_the_middle():
    torch.manual_seed(1)
    mia = MIA(16, narrow=True)
    ori, mid = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    residual = (torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4))
    both = mia(ori, mid, residual)
    alone = mia(ori, None, (residual[0], None))
    assert alone[1] is None and alone[2][1] is None
    torch.testing.assert_close(alone[0], both[0], rtol=0, atol=0)
    torch.testing.assert_close(alone[2][0], both[2][0], rtol=0, atol=0)


def bare_baseline(net, v, t):
    """The AGW two-stream baseline written out: the network without middle, MIA and MFA must be this."""
    x = torch.cat([net.visible_module(v), net.thermal_module(t)])
    for i in (1, 2, 3, 4):
        x = net.base_resnet.layer(i, x)
    pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.normalize(pool, dim=1, eps=0), F.normalize(net.bottleneck(pool), dim=1, eps=0)


def test_loss_switches_against_their_terms():
    g = torch.Generator().manual_seed(3)
    labels_v = torch.tensor([4, 4, 1, 1])
    labels_t = labels_v.clone()
    triplet, tca = OriTripletLoss(margin=0.3), TcaLoss(margin=0.7)
    logits4, feat4 = torch.randn(16, 9, generator=g), torch.randn(16, 8, generator=g)
    v, v_mid, t, t_mid = feat4.chunk(4)
    pair = torch.cat([labels_v, labels_t])
    labels4 = torch.cat([labels_v, labels_v, labels_t, labels_t])
    # original pairs only, identity weighted, TCA on
    total, parts = total_loss(feat4, logits4, labels_v, labels_t, triplet, tca, 0.7, pairs='original', id_weight=0.5)
    expected = 0.5 * F.cross_entropy(logits4, labels4) + triplet(torch.cat([v, t]), pair)[0] + 0.7 * tca(feat4, labels4)
    torch.testing.assert_close(total, expected)
    assert parts['correct'] == triplet(torch.cat([v, t]), pair)[1]
    # TCA off: not computed, reported as 0
    total, parts = total_loss(feat4, logits4, labels_v, labels_t, triplet, None, 0)
    tri = sum(triplet(torch.cat([a, b]), pair)[0] for a in (v, v_mid) for b in (t, t_mid)) / 4
    torch.testing.assert_close(total, F.cross_entropy(logits4, labels4) + tri)
    assert parts['tca'] == 0.0
    # two streams [v, t] without the middle modality
    feat2, logits2 = torch.cat([v, t]), logits4[:8]
    total, parts = total_loss(feat2, logits2, labels_v, labels_t, triplet, None, 0, middle=False)
    torch.testing.assert_close(total, F.cross_entropy(logits2, pair) + triplet(feat2, pair)[0])
    with pytest.raises(ValueError, match='lambda_1 must be 0'):
        total_loss(feat2, logits2, labels_v, labels_t, triplet, tca, 0.7, middle=False)


def train_args(**switches):
    """train.py's arguments namespace with some switches set (what train_epoch and the checkpoint read)."""
    args = train_script.parse_args(['--img_h', str(H), '--img_w', str(W)])
    for k, v in switches.items():
        setattr(args, k, v)
    return args


# A representative set: every switch takes each of its values at least once.
CONFIGS = [
    dict(middle=False, mia=(), mfa=False, triplet_pairs='original', id_weight=0.5, lambda_1=0.0),
    dict(middle=True, mia=(1, 3), mfa=False, triplet_pairs='original', id_weight=1.0, lambda_1=0.7),
    dict(middle=True, mia=(2,), mfa=True, triplet_pairs='all', id_weight=2.0, lambda_1=0.0),
]   # and the end-to-end runs below: no middle with every MIA and MFA; MIA 1,3 without MFA


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: architecture(train_args(**c)).run_name_part() + loss_switches(train_args(**c)).run_name_part())
def test_each_configuration_trains_a_step_and_its_checkpoint_rebuilds_it(tmp_path, config, capsys):
    args = train_args(**config)
    torch.manual_seed(0)
    net = embed_net(3, **architecture(args).as_dict())
    optimizer = make_optimizer(net, args)
    g = torch.Generator().manual_seed(0)
    v1, v2, t1, t2 = (torch.randn(2, 3, H, W, generator=g) for _ in range(4))
    labels = torch.tensor([0, 2])
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    net.train()
    feat, logits = net(v1, v2, t1, t2, Modal.BOTH)
    streams = 4 if args.middle else 2
    assert feat.shape == (streams * 2, 2048) and logits.shape == (streams * 2, 3)
    loss, parts = total_loss(feat, logits, labels, labels, OriTripletLoss(margin=0.3), TcaLoss(), args.lambda_1,
                             middle=args.middle, pairs=args.triplet_pairs, id_weight=args.id_weight)
    assert torch.isfinite(loss) and (parts['tca'] > 0) == bool(args.lambda_1)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = [k for k, p in net.named_parameters() if not torch.equal(before[k], p.detach())]
    assert 'classifier.weight' in moved and any(k.startswith('base_resnet.') for k in moved)

    net.eval()
    with torch.no_grad():
        pool, bn = net(v1, v1, v1, v1, Modal.VISIBLE)
        if architecture(args).as_dict() == {'middle': False, 'mia': [], 'mfa': False}:
            for got, expected in zip(net(v1, None, t1, None, Modal.BOTH), bare_baseline(net, v1, t1)):
                torch.testing.assert_close(got, expected)
    assert pool.shape == bn.shape == ((2 if args.middle else 1) * 2, 2048)

    # as train.py writes it; load_model (test.py, visualize.py, export.py) rebuilds it
    path = tmp_path / 'ckpt.t'
    save_checkpoint({'net': net.state_dict(), 'epoch': 0, 'se_channels': net.se_channels,
                     'architecture': net.architecture(), 'args': vars(args)}, path)
    ckpt = read_checkpoint(path)
    assert checkpoint_architecture(ckpt) == architecture(args).as_dict()
    rebuilt = load_model(str(path), torch.device("cpu"), channels_last=False).eval()
    assert rebuilt.architecture() == net.architecture()
    with torch.no_grad():
        again = rebuilt(v1, v1, v1, v1, Modal.VISIBLE)
    torch.testing.assert_close(again[0], pool, rtol=0, atol=0)
    torch.testing.assert_close(again[1], bn, rtol=0, atol=0)
    if not args.middle:   # export.py's branch: the original features, and the embedding of test.py's ALL
        with torch.no_grad():
            features, embedding = Embedder(rebuilt, Modal.VISIBLE)(v1)
        torch.testing.assert_close(features, torch.stack([pool, bn], dim=1), rtol=0, atol=0)
        torch.testing.assert_close(embedding @ embedding.T, bn @ bn.T + pool @ pool.T)
    path.unlink()   # 200 MB; the machine's disk is shared


def test_a_checkpoint_without_architecture_is_the_full_model():
    assert checkpoint_architecture({'net': {}}) == {'middle': True, 'mia': [1, 2, 3], 'mfa': True}
    state = embed_net(4).state_dict()
    assert checkpoint_model_args({'net': state}) == {'class_num': 4, 'working_se': False, 'middle': True,
                                                      'mia': [1, 2, 3], 'mfa': True}
    with pytest.raises(ReIDError, match='architecture'):
        checkpoint_architecture({'net': {}, 'architecture': {'middle': True, 'mia': [5], 'mfa': True}}, 'x.t')


def test_baseline_scores_are_the_two_that_exist():
    """Without the middle modality: VIS-IR FC = bn original, ALL = bn + pool of the originals, by the
    vectors and by the similarities alike."""
    g = np.random.default_rng(0)
    q = {'pool_ori': g.standard_normal((3, 5)), 'bn_ori': g.standard_normal((3, 5))}
    gal = {'pool_ori': g.standard_normal((4, 5)), 'bn_ori': g.standard_normal((4, 5))}
    sims = score_similarities(q, gal)
    assert list(sims) == ['VIS-IR FC', 'ALL']
    np.testing.assert_allclose(sims['VIS-IR FC'], q['bn_ori'] @ gal['bn_ori'].T)
    np.testing.assert_allclose(sims['ALL'], q['bn_ori'] @ gal['bn_ori'].T + q['pool_ori'] @ gal['pool_ori'].T)
    for name, (qv, gv) in score_vectors(q, gal).items():
        np.testing.assert_allclose(qv @ gv.T, sims[name])
    scores = {name: {'rank1': 0.5, 'rank5': 0.6, 'rank10': 0.7, 'rank20': 0.8, 'mAP': 0.4, 'mINP': 0.3}
              for name in sims}
    table = format_table('t', scores)
    assert 'VIS-MR FC' not in table.split('\n')[2] and NO_MIDDLE_NOTE in table


# ----------------------------------------------------------------------------- end to end
FAST = ['--img_h', str(H), '--img_w', str(W), '--workers', '0', '--test-batch', '32', '--gpu', '']
TRAIN = FAST + ['--pretrained', 'none', '--batch-size', '2', '--num_pos', '2', '--lr', '0.01', '--epochs', '1']


def test_the_baseline_trains_and_tests_end_to_end(tmp_path, regdb_root, capsys):
    """train.py --no-middle, then test.py on its checkpoint alone: the two scores that exist, the
    table's note, the results file's keys, the run name and the arguments line."""
    models = tmp_path / 'models'
    train_script.main(['--dataset', 'regdb', '--data-path', regdb_root, '--model_path', str(models),
                       '--log_path', str(tmp_path / 'log'), '--vis_log_path', str(tmp_path / 'vis'),
                       *TRAIN, '--no-middle', '--lambda_1', '0'])
    out = capsys.readouterr().out
    last = models / 'regdb_p2_n2_lr_0.01_seed_0_nomiddle_lambda_0.0_trial_1_last.t'
    ckpt = read_checkpoint(last)
    assert ckpt['architecture'] == {'middle': False, 'mia': [1, 2, 3], 'mfa': True} and ckpt['se_channels'] is None
    assert not any(k.startswith(GENERATOR + MIDDLE_STEMS) for k in ckpt['net'])
    args_line = next(line for line in out.splitlines() if line.startswith('arguments: '))
    assert ' middle=False' in args_line and not any(f' {k}=' in args_line for k in ('mia', 'mfa', 'triplet_pairs',
                                                                                     'id_weight'))
    results = tmp_path / 'results.json'
    features = tmp_path / 'features.npz'
    test_script.main(['--dataset', 'regdb', '--data-path', regdb_root, '--resume', str(last), '--trials', '1',
                      '--results', str(results), '--save-features', str(features), *FAST])
    out = capsys.readouterr().out
    report = json.loads(results.read_text())
    scores = ['VIS-IR FC', 'ALL']
    assert list(report['mean']) == list(report['std']) == list(report['cmc']['mean']) == scores
    assert [k for k in report['per_trial'][0] if k != 'trial'] == scores
    rows = {m.group(1) for m in (re.match(r'  (\S+(?: FC)?) +\d+\.\d\d%', line) for line in out.splitlines()) if m}
    assert rows == set(scores)
    assert NO_MIDDLE_NOTE in out and 'no middle modality, so only these two' in out
    assert 'two-stream baseline (no middle modality)' in out
    # the features file holds the original features only, and scores the same again
    assert {'pool_ori', 'bn_ori'} <= set(np.load(features).files) and 'bn_mid' not in np.load(features).files
    again = test_script.main(['--from-features', str(features)])
    assert again == report['mean']
    capsys.readouterr()
    # visualize.py: the scores and figures that exist, a clear error for the rest
    visualize.main(['ranking', '--features', str(features), '--queries', '1', '--topk', '3', '--height', '32',
                    '--out', str(tmp_path / 'rank.png')])
    visualize.main(['distances', '--features', str(features), '--out', str(tmp_path / 'dist.png')])
    assert (tmp_path / 'rank.png').is_file() and (tmp_path / 'dist.png').is_file()
    assert 'ori:' in capsys.readouterr().out
    with pytest.raises(ReIDError, match='no middle modality'):
        visualize.main(['ranking', '--features', str(features), '--score', 'MIS-MR FC', '--out', str(tmp_path / 'x')])
    # resuming it as the full network is refused before anything is written
    with pytest.raises(ReIDError, match=r"another network .*middle False \(this run: True\)"):
        train_script.main(['--dataset', 'regdb', '--data-path', regdb_root, '--model_path', str(models),
                           '--log_path', str(tmp_path / 'log2'), *TRAIN, '--resume', str(last)])
    assert not (tmp_path / 'log2').exists()
    shutil.rmtree(models)   # 400 MB; the machine's disk is shared


def test_run_name_and_arguments_line_name_the_switches_that_differ():
    args = train_script.parse_args(['--dataset', 'regdb', '--mia', '1,3', '--no-mfa', '--triplet-pairs', 'original',
                                    '--id-weight', '0.5', '--lambda_1', '0.5'])
    assert run_name(args) == 'regdb_p4_n4_lr_0.1_seed_0_mia_1_3_nomfa_pairs_original_id_0.5_lambda_0.5_trial_1'
    assert run_name(train_script.parse_args(['--mia', 'none'])) == 'sysu_p4_n4_lr_0.1_seed_0_mia_none'
    line = train_script.arguments_line(args)
    assert all(f' {k}' in line for k in ('mia=(1, 3)', 'mfa=False', 'triplet_pairs=original', 'id_weight=0.5'))
    assert ' middle=' not in line


def test_default_run_name_and_arguments_line_are_unchanged():
    args = train_script.parse_args([])
    assert run_name(args) == 'sysu_p4_n4_lr_0.1_seed_0'
    line = train_script.arguments_line(args)
    assert not any(f' {k}=' in line for k in ('middle', 'mia', 'mfa', 'triplet_pairs', 'id_weight'))
    assert 'lambda_1=0.7' in line


def test_incompatible_switches_are_clear_errors(tmp_path, regdb_root):
    base = ['--dataset', 'regdb', '--data-path', regdb_root, '--model_path', str(tmp_path / 'm'),
            '--log_path', str(tmp_path / 'log'), *TRAIN]
    with pytest.raises(ReIDError, match='--lambda_1 0'):
        train_script.main(base + ['--no-middle'])
    with pytest.raises(ReIDError, match='--se-channels'):
        train_script.main(base + ['--no-middle', '--lambda_1', '0', '--se-channels', '3,5,4'])
    assert not (tmp_path / 'm').exists() and not (tmp_path / 'log').exists()
