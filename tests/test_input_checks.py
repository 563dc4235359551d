"""What train.py, test.py and process_sysu.py refuse before any work: bad data roots, layouts,
flags, missing RegDB split checkpoints, trial selection."""
import json
import os
import warnings
from types import SimpleNamespace

import pytest
import torch

import data_manager as dm
import process_sysu
import test as test_script
import train as train_script
from ifalnet import flags
from ifalnet.checkpoints import resolve_checkpoint, save_checkpoint
from ifalnet.problems import build_problem
from ifalnet.toy_datasets import make_sysu
from model import embed_net
from utils import ReIDError

# ----------------------------------------------------------------------------------- input checks

def train_args(tmp_path, *extra):
    return ['--model_path', str(tmp_path / 'models'), '--log_path', str(tmp_path / 'log'),
            '--vis_log_path', str(tmp_path / 'vis'), '--gpu', '', '--pretrained', 'none', *extra]


def assert_nothing_written(tmp_path):
    assert not [p for p in ('models', 'log', 'vis') if (tmp_path / p).exists()]


@pytest.mark.parametrize('case', ['missing root', 'one slip off', 'default root', 'unprepared', 'resume',
                                  'pretrained', 'regdb trial', 'count'])
def test_train_refuses_bad_input_before_writing_anything(tmp_path, monkeypatch, sysu_root, regdb_root, case):
    monkeypatch.chdir(tmp_path)   # where the default ./Datasets/... roots do not exist
    args, message = {
        'missing root': (['--data-path', str(tmp_path / 'nowhere')],
                         f'--data-path {tmp_path / "nowhere"} does not exist; expected the sysu dataset root'),
        'one slip off': (['--data-path', sysu_root[:-1] + 'x'],   # its sibling, one character off, is named
                         f'--data-path {sysu_root[:-1]}x does not exist (did you mean {sysu_root}?); expected the '
                         'sysu dataset root'),
        'default root': (['--dataset', 'llcm'], 'no --data-path given, and the default llcm root ./Datasets/LLCM/ '
                                                'does not exist: pass --data-path'),
        'unprepared': (['--data-path', sysu_root],
                       f'not prepared for training (no train_rgb_resized_img.npy): run `python process_sysu.py '
                       f'--data-path {sysu_root}` first'),
        'resume': (['--dataset', 'regdb', '--data-path', regdb_root, '--resume', 'gone_last.t'],
                   'checkpoint not found: gone_last.t'),
        'pretrained': (['--dataset', 'regdb', '--data-path', regdb_root, '--pretrained', 'r50.pth'],
                       '--pretrained r50.pth: no such file'),
        'regdb trial': (['--dataset', 'regdb', '--data-path', regdb_root, '--trial', '11'],
                        '--trial 11: RegDB splits are 1..10'),
        'count': (['--dataset', 'regdb', '--data-path', regdb_root, '--save_epoch', '0'],
                  '--save_epoch must be at least 1, got 0'),
    }[case]
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, *args))
    assert message in str(err.value)
    assert_nothing_written(tmp_path)


@pytest.fixture(scope='module')
def parent_of_sysu(tmp_path_factory):
    """A work folder holding a (tiny) SYSU-MM01 dataset in its subfolder SYSU-MM01, next to others."""
    work = tmp_path_factory.mktemp('work')
    (work / 'notes').mkdir()
    make_sysu(work / 'SYSU-MM01', train_ids=(1, 2), val_ids=(3,), test_ids=(4, 5), images_per_cam=1, size=(16, 8))
    return work


@pytest.mark.parametrize('run', ['train', 'test', 'process_sysu'])
def test_a_parent_folder_passed_as_root_names_the_dataset_folder(tmp_path, parent_of_sysu, run):
    argv = ['--data-path', str(parent_of_sysu)]
    main = {'train': lambda: train_script.main(train_args(tmp_path, *argv)),
            'test': lambda: test_script.main(['--resume', 'x.t', '--gpu', '', *argv]),
            'process_sysu': lambda: process_sysu.main(argv)}[run]
    with pytest.raises(ReIDError) as err:
        main()
    child = parent_of_sysu / 'SYSU-MM01'
    assert str(err.value) == (f'--data-path {parent_of_sysu} is not the SYSU-MM01 root (it has no '
                              f'{os.path.join("exp", "test_id.txt" if run == "test" else "train_id.txt")}), '
                              f'but its subfolder {child} is: pass --data-path {child}')
    assert not list(child.glob('*.npy')) and not (tmp_path / 'log').exists()


def test_a_folder_without_the_layout_lists_what_is_missing(tmp_path, parent_of_sysu):
    with pytest.raises(ReIDError) as err:
        process_sysu.main(['--data-path', str(parent_of_sysu / 'notes')])
    assert str(err.value) == (f'--data-path {parent_of_sysu / "notes"} is not the SYSU-MM01 root: no '
                              f'{os.path.join("exp", "train_id.txt")}, {os.path.join("exp", "val_id.txt")}, '
                              f'{os.path.join("exp", "test_id.txt")} in it; expected the {dm.SYSU_LAYOUT}')
    with pytest.raises(ReIDError, match=r'not the RegDB root: no idx.test_visible_2.txt, idx.test_thermal_2.txt '
                                        r'in it; expected the RegDB layout'):
        test_script.main(['--dataset', 'regdb', '--data-path', str(tmp_path), '--resume', 'x.t', '--trials', '2'])


# ----------------------------------------------------------------------------------- RegDB testing

def test_regdb_missing_split_checkpoints_are_listed_before_any_embedding(tmp_path, regdb_root, capsys):
    (tmp_path / 'regdb_trial_2_best.t').write_bytes(b'')   # found, so never opened: the check comes first
    (tmp_path / 'regdb_trial_5_best.t').write_bytes(b'')
    with pytest.raises(ReIDError) as err:
        test_script.main(['--dataset', 'regdb', '--data-path', regdb_root, '--gpu', '', '--model_path', str(tmp_path),
                          '--resume', 'regdb_trial_{trial}_best.t', '--trials', '1,2,3,5'])
    assert str(err.value) == (f'2 of 4 RegDB checkpoints not found (looked for each as given and under '
                              f'--model_path {tmp_path}):\n  regdb_trial_1_best.t\n  regdb_trial_3_best.t\n'
                              'found the checkpoints of split(s) 2, 5: test those alone with --trials 2,5')
    assert capsys.readouterr().out == ''   # nothing loaded or embedded


def run_test_script(tmp_path, *argv):
    results = tmp_path / 'results.json'
    test_script.main([*argv, '--img_h', '32', '--img_w', '16', '--workers', '0', '--gpu', '',
                      '--results', str(results)])
    return json.loads(results.read_text())


def test_regdb_trial_flag_selects_that_split(tmp_path, regdb_root, untrained_checkpoint):
    report = run_test_script(tmp_path, '--dataset', 'regdb', '--data-path', regdb_root,
                             '--resume', str(untrained_checkpoint), '--trial', '4')
    assert report['trials'] == [4] and [t['trial'] for t in report['per_trial']] == [4]


def test_trial_and_trials_flags(capsys):
    select = lambda *argv: test_script.select_trials(test_script.parse_args(['--resume', 'x.t', *argv]))
    assert select('--dataset', 'regdb') == list(range(1, 11))
    assert select('--dataset', 'regdb', '--trial', '4') == select('--dataset', 'regdb', '--trials', '4') == [4]
    assert select('--dataset', 'regdb', '--trial', '4', '--trials', '4') == [4]
    with pytest.raises(ReIDError, match='--trial 4 and --trials 3 ask for different RegDB splits'):
        select('--dataset', 'regdb', '--trial', '4', '--trials', '3')
    with pytest.raises(ReIDError, match=r"--trial for regdb must be within 1..10, got '0'"):
        select('--dataset', 'regdb', '--trial', '0')
    assert capsys.readouterr().out == ''
    assert select('--dataset', 'sysu', '--trial', '4', '--trials', '1') == [1]
    assert capsys.readouterr().out == ('note: --trial selects a RegDB split; sysu gallery draws are chosen with '
                                       '--trials, so --trial 4 is ignored\n')


# ----------------------------------------------------------------------------------- a new user's traps
def test_the_help_says_what_each_direction_flag_gives_per_dataset(capsys):
    with pytest.raises(SystemExit):
        test_script.parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    tvsearch = text[text.index('--tvsearch [True|False]', text.index('data:')):]
    assert ('LLCM: False (default) the release\'s "VIS to IR", which is in fact infrared -> visible' in tvsearch
            and 'visible -> infrared is --protocol standard' in tvsearch and 'RegDB: False (default) visible -> '
            'thermal' in tvsearch and 'SYSU-MM01: always infrared -> visible' in tvsearch)
    protocol = text[text.index('--protocol {release,standard}', text.index('test:')):]
    assert 'standard = visible -> infrared' in protocol and 'SYSU-MM01 and RegDB: the same either way' in protocol


def test_workers_beyond_the_usable_cpus_get_one_note_instead_of_torchs_warning_per_loader(monkeypatch):
    """The default is the release's 4 on any machine; beyond the CPUs the process may use, one note
    replaces the warning torch repeats for every DataLoader."""
    assert train_script.parse_args([]).workers == test_script.parse_args(['--resume', 'x']).workers == 4
    monkeypatch.setattr(flags, 'usable_cpus', lambda: 2)
    assert flags.workers_note(2) is None
    data = torch.utils.data.TensorDataset(torch.zeros(4))
    with warnings.catch_warnings(record=True) as caught:   # the filter leaves with the block
        warnings.simplefilter('always')
        torch.utils.data.DataLoader(data, num_workers=os.cpu_count() + 1)
        assert [w for w in caught if 'worker processes in total' in str(w.message)]   # torch's own, before the note
        caught.clear()
        assert flags.workers_note(4) == ('note: --workers 4 loader processes share the 2 CPUs this process may use; '
                                         '--workers 2 avoids the oversubscription (the results are the same either way)')
        torch.utils.data.DataLoader(data, num_workers=os.cpu_count() + 1)
        assert not [w for w in caught if 'worker processes in total' in str(w.message)]


def warnings_of(*argv, selection=None, source_size=None):
    return train_script.start_warnings(train_script.parse_args(list(argv)), selection, source_size)


def test_training_traps_are_one_warning_each():
    assert warnings_of(source_size=(384, 192)) == []                 # the release's run: nothing to say
    upsampled, = warnings_of(source_size=(64, 32))
    assert upsampled.startswith('warning: the training images are about 64x32 (the median of a sample) and --img_h 384 '
                                '--img_w 192 upsamples them 36x in pixels') and '--img_h 64 --img_w 32' in upsampled
    assert warnings_of('--img_h', '96', '--img_w', '48', source_size=(64, 32)) == []   # 2.25x: a resize, no trap
    scratch, = warnings_of('--pretrained', 'none')
    assert 'warning: --pretrained none with SGD --lr 0.1' in scratch and '--optim adam --lr 0.02' in scratch
    assert warnings_of('--pretrained', 'none', '--optim', 'adam', '--lr', '0.02') == []
    held = lambda queries, ids: SimpleNamespace(problem=SimpleNamespace(
        query=SimpleNamespace(paths=['q'] * queries), gallery=SimpleNamespace(paths=ids, ids=ids)))
    one, = warnings_of('--select', 'val', selection=held(3, [7]))
    assert one.startswith('warning: --select val validates on 3 queries against 1 gallery image of one identity: '
                          'Rank-1 is 100% by construction')
    few, = warnings_of('--select', 'val', selection=held(30, [1, 2, 3]))
    assert 'against 3 gallery identities: too few' in few
    assert warnings_of('--select', 'val', selection=held(300, list(range(30)))) == []


def test_a_missing_best_checkpoint_points_at_the_runs_last(tmp_path):
    (tmp_path / 'run_last.t').write_bytes(b'')
    with pytest.raises(ReIDError, match=r'checkpoint not found: run_best.t \(also looked in --model_path .*\); '
                                        r'.*run_last.t is there: a run validates after every epoch but the first'):
        resolve_checkpoint('run_best.t', str(tmp_path))


def test_resuming_another_datasets_checkpoint_names_both(tmp_path, regdb_root):
    ckpt = tmp_path / 'sysu_last.t'
    torch.manual_seed(0)
    save_checkpoint({'net': embed_net(6).state_dict(), 'epoch': 0, 'args': {'dataset': 'sysu', 'trial': 1}}, ckpt)
    with pytest.raises(ReIDError, match=r'sysu_last.t was trained on SYSU-MM01 \(6 classes\), but this run trains on '
                                        r'RegDB split 1 \(5 classes\): resume a checkpoint of RegDB'):
        train_script.main(['--dataset', 'regdb', '--data-path', regdb_root, '--resume', str(ckpt), '--pretrained',
                           'none', '--model_path', str(tmp_path / 'm'), '--log_path', str(tmp_path / 'l')])


def test_ten_shots_of_short_folders_say_so(sysu_root):
    problem = build_problem('sysu', sysu_root, 0, shots=10)
    note = test_script.short_folders_note(problem, 10)
    assert note.startswith('note: --shots 10: ') and 'hold fewer than 10 images (3 to 3); each gives all it has' in note
    assert test_script.short_folders_note(problem, 3) == ''
