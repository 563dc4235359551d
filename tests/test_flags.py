"""What a user meets at the command line: file modes, flag spellings, --help, input checks, messages."""
import argparse
import contextlib
import json
import os
import re
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import data_manager as dm
import process_sysu
import synthetic
import test as test_script
import train as train_script
from model import embed_net
from ifalnet.toy_datasets import make_sysu
from ifalnet.checkpoints import save_checkpoint
from ifalnet.devices import select_device
from ifalnet.flags import add_flag, make_parser
from ifalnet.atomic import atomic_write
from utils import ReIDError


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------------------- file modes

@pytest.mark.parametrize('mask, expected', [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path, mask, expected):
    with umask(mask):
        with open(tmp_path / 'plain.txt', 'w') as f:   # what the umask gives a file made by open()
            f.write('x')
        atomic_write(tmp_path / 'results.json', lambda f: f.write('{}\n'), mode='w')
        save_checkpoint({'net': {'w': torch.zeros(2)}, 'epoch': 0}, tmp_path / 'model.t')
        atomic_write(tmp_path / 'labels.npy', lambda f: np.save(f, np.arange(3)))
    assert mode_of(tmp_path / 'plain.txt') == expected
    for name in ('results.json', 'model.t', 'labels.npy'):
        assert mode_of(tmp_path / name) == expected, name
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]


def test_replacing_a_file_gives_the_umask_mode(tmp_path):
    path = tmp_path / 'results.json'
    path.write_text('old')
    os.chmod(path, 0o600)
    with umask(0o022):
        atomic_write(path, lambda f: f.write('new'), mode='w')
    assert path.read_text() == 'new' and mode_of(path) == 0o644


def test_process_sysu_arrays_get_the_umask_mode(tmp_path):
    files = [str(tmp_path / f'{i}.png') for i in range(2)]
    for i, path in enumerate(files):
        Image.fromarray(np.full((8, 4, 3), 40 * i, np.uint8)).save(path)
    with umask(0o022):
        process_sysu.save_resized_images(str(tmp_path / 'train_rgb_resized_img.npy'), files, 8, 4, 'rgb')
    assert mode_of(tmp_path / 'train_rgb_resized_img.npy') == 0o644
    assert np.load(tmp_path / 'train_rgb_resized_img.npy').shape == (2, 8, 4, 3)


# ----------------------------------------------------------------------------------- flags and --help

# Every flag whose name has "-" or "_", with a value to give it (None for a switch) and the value it
# parses to.
SPELLING_CASES = {
    '--data-path': ('some/root', 'some/root'), '--img_w': ('20', 20), '--img_h': ('30', 30),
    '--test-batch': ('7', 7), '--model_path': ('models/', 'models/'), '--batch-size': ('3', 3),
    '--num_pos': ('5', 5), '--lambda_1': ('0.5', 0.5), '--save_epoch': ('4', 4), '--log_path': ('L/', 'L/'),
    '--vis_log_path': ('V/', 'V/'), '--print-freq': ('9', 9), '--se-channels': ('5,0,3', (5, 0, 3)),
    '--channels-last': (None, True), '--sync-bn': (None, True), '--dist-backend': ('gloo', 'gloo'),
    '--dist-timeout': ('5', 5.0), '--save-features': ('f.npz', 'f.npz'), '--warmup-epochs': ('3', 3),
    '--lr-steps': ('5,8', (5, 8)), '--lambda-value': ('0.5', 0.5), '--per-camera': (None, True),
    '--from-features': ('f.npz', 'f.npz'), '--run-name': ('ab', 'ab'), '--val-ids': ('3', 3),
    '--triplet-pairs': ('original', 'original'), '--id-weight': ('0.5', 0.5),
}


def other_spelling(flag):
    return '--' + flag[2:].translate(str.maketrans('-_', '_-'))


def help_entries(parse, capsys):
    """{flag: help text} of the flags --help lists, and the whole help text."""
    with pytest.raises(SystemExit) as exit_:
        parse(['--help'])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    lines = text.split('\n\n', 1)[1].splitlines()   # after the usage
    entries, flag = {}, None
    for line in lines:
        start = re.match(r'  (-[-\w]+)(?:,? [^ ]+)*(?:  +(.*))?$', line) if re.match(r'  -', line) else None
        if start:
            flag = start.group(1)
            entries[flag] = start.group(2) or ''
        elif flag and line.startswith(' ' * 20):
            entries[flag] += ' ' + line.strip()
        else:
            flag = None
    return entries, text


@pytest.mark.parametrize('script', ['train', 'test'])
def test_both_spellings_of_every_flag_parse_to_the_same_value(script, capsys):
    parse = (train_script.parse_args if script == 'train'
             else lambda argv: test_script.parse_args(argv if any(a.split('=')[0] in ('--from-features', '--from_features')
                                                          for a in argv) else ['--resume', 'x.t', *argv]))
    entries, _ = help_entries(parse, capsys)
    with_separator = {flag for flag in entries if re.search(r'\w[-_]\w', flag)}
    # A new flag with "-" or "_" needs a row in SPELLING_CASES (and gets its alias from flags.add_flag).
    train_only = {'--print-freq', '--sync-bn', '--dist-backend', '--dist-timeout', '--warmup-epochs', '--lr-steps',
                  '--run-name', '--val-ids', '--triplet-pairs', '--id-weight'}
    test_only = {'--save-features', '--lambda-value', '--per-camera', '--from-features'}
    assert with_separator == set(SPELLING_CASES) - (train_only if script == 'test' else test_only)
    for flag in with_separator:
        given, expected = SPELLING_CASES[flag]
        dest = flag[2:].replace('-', '_')
        value = [] if given is None else [given]
        release = vars(parse([flag, *value]))
        other = vars(parse([other_spelling(flag), *value]))
        assert release[dest] == other[dest] == expected, flag
        assert release == other
        if given is not None:
            assert vars(parse([f'{other_spelling(flag)}={given}']))[dest] == expected
    # the negative form of a boolean option, listed in the same --help entry, takes both spellings too
    assert parse(['--no-channels-last']).channels_last is parse(['--no_channels_last']).channels_last is False
    if script == 'train':
        assert parse(['--no-middle']).middle is parse(['--no_middle']).middle is False
        assert parse(['--no-mfa']).mfa is parse(['--no_mfa']).mfa is False


def test_other_spelling_reports_errors_under_its_own_name(capsys):
    with pytest.raises(SystemExit):
        train_script.parse_args(['--img-h', 'tall'])
    assert "argument --img-h: invalid int value: 'tall'" in capsys.readouterr().err


def test_add_flag_covers_switches_and_both_forms_of_a_boolean_option():
    parser = make_parser('x')
    add_flag(parser, '--channels-last', action=argparse.BooleanOptionalAction, default=True, help='h')
    add_flag(parser, '--fast_mode', action='store_true', help='h')
    parse = lambda *argv: vars(parser.parse_args(argv))
    assert parse() == {'channels_last': True, 'fast_mode': False}
    assert parse('--no_channels_last')['channels_last'] is False
    assert parse('--no-channels-last', '--channels_last')['channels_last'] is True
    assert parse('--fast-mode')['fast_mode'] is True
    with pytest.raises(ValueError, match='required flag cannot have an alias'):
        add_flag(parser, '--must_have', required=True, help='h')


@pytest.mark.parametrize('script', ['train', 'test', 'process_sysu', 'synthetic'])
def test_help_lists_each_flag_once_with_its_help_and_default(script, capsys):
    parse = {'train': train_script.parse_args, 'test': test_script.parse_args,
             'process_sysu': process_sysu.main, 'synthetic': synthetic.main}[script]
    entries, text = help_entries(parse, capsys)
    usage = text.split('\n\n', 1)[0]
    listed = re.findall(r'^  (--[-\w]+)', text, re.MULTILINE)
    assert sorted(listed) == sorted(set(listed))                                  # each flag once
    aliases = {other_spelling(flag) for flag in listed} - set(listed)
    assert not aliases & set(re.findall(r'--[-\w]+', usage + '\n'.join(entries.values())))
    assert all(help_ for help_ in entries.values()), [f for f, h in entries.items() if not h]
    defaults = {'train': {'--epochs': '121', '--lr': '0.1', '--gpu': '0', '--img_h': '384', '--num_pos': '4',
                          '--print-freq': '50', '--save_epoch': '20', '--pretrained': 'imagenet'},
                'test': {'--protocol': 'release', '--test-batch': '64', '--model_path': 'save_model/'},
                'process_sysu': {'--data-path': './Datasets/SYSU-MM01/'},
                'synthetic': {'--size': '128x64', '--seed': '0', '--ids': '12'}}[script]
    for flag, default in defaults.items():
        assert f'(default: {default})' in entries[flag], flag
    if script in ('train', 'test'):
        assert "'cpu' or '' runs on the CPU" in entries['--gpu']
        # test.py takes --resume or --onnx (exported files), so neither is marked required
        assert '[--resume FILE]' in usage
        assert ('[--onnx VISIBLE THERMAL]' in usage) is (script == 'test')


def test_gpu_cpu_or_empty_selects_the_cpu(capsys):
    for gpu in ('cpu', '', 'CPU'):
        assert select_device(gpu) == torch.device('cpu')
        assert 'running on the CPU (--gpu cpu)' in capsys.readouterr().out


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


@pytest.fixture(scope='module')
def untrained_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('untrained') / 'untrained.t'
    torch.manual_seed(0)
    save_checkpoint({'net': embed_net(5).state_dict(), 'epoch': -1}, path)
    return path


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


# ----------------------------------------------------------------------------------- synthetic.py --out

def test_synthetic_out_must_be_new_empty_or_its_own_with_force(tmp_path):
    make = lambda out, *extra: synthetic.main(['--dataset', 'regdb', '--out', str(out), '--ids', '4', '--images', '1',
                                               '--size', '16x8', *extra])
    out = tmp_path / 'regdb'
    make(out)
    assert (out / synthetic.MARKER).is_file() and (out / 'idx' / 'test_visible_1.txt').is_file()
    (out / 'old_file.txt').write_text('from an earlier run')
    with pytest.raises(ReIDError, match='already holds a synthetic dataset: pass --force to replace it'):
        make(out, '--seed', '1')
    assert (out / 'old_file.txt').is_file()
    make(out, '--force', '--seed', '1')
    assert not (out / 'old_file.txt').exists() and (out / synthetic.MARKER).is_file()

    (tmp_path / 'empty').mkdir()
    make(tmp_path / 'empty')                  # an empty folder is fine
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    for extra in ([], ['--force']):
        with pytest.raises(ReIDError, match=r'is not empty and synthetic.py did not make it .*even with --force'):
            make(mine, *extra)
    assert sorted(os.listdir(mine)) == ['notes.txt']
