"""ifalnet/flags.py and the scripts' command lines: both spellings of every flag, --help, --gpu."""
import argparse
import os
import re
import subprocess
import sys

import pytest
import torch

import bench
import export as export_script
import process_sysu
import synthetic
import test as test_script
import train as train_script
import visualize
from ifalnet.devices import select_device
from ifalnet.flags import add_component_args, add_flag, component_defaults, make_parser

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
    '--triplet-pairs': ('original', 'original'), '--id-weight': ('0.5', 0.5), '--corrupt-seed': ('4', 4),
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
    test_only = {'--save-features', '--lambda-value', '--per-camera', '--from-features', '--corrupt-seed'}
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
    assert "argument --img-h: expected a whole number of pixels, got 'tall'" in capsys.readouterr().err


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


# ----------------------------------------------------------------------------------- flags before torch
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each script with a command line that fails to parse (a flag misspelt or unknown).
MISTYPED = {'train': ['--epochs', '2', '--no-such-flag'], 'test': ['--resume', 'x.t', '--no-such-flag'],
            'export': ['--resume', 'x.t', '--out', 'x.onnx', '--no-such-flag'],
            'visualize': ['tsne', '--features', 'x.npz', '--out', 'x.png', '--no-such-flag'],
            'bench': ['--no-such-flag'], 'demo': ['--no-such-flag'], 'tables': ['x.json', '--no-such-flag'],
            'process_sysu': ['--no-such-flag'], 'synthetic': ['--dataset', 'sysu', '--out', 'x', '--no-such-flag']}


def imported_modules(stderr):
    """The modules `python -X importtime` reported importing."""
    return {line.rsplit('|', 1)[-1].strip() for line in stderr.splitlines() if line.startswith('import time:')}


@pytest.mark.parametrize('script', sorted(MISTYPED))
def test_a_mistyped_flag_answers_before_torch_is_imported(script, tmp_path):
    result = subprocess.run([sys.executable, '-X', 'importtime', os.path.join(ROOT, f'{script}.py'), *MISTYPED[script]],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f'{script}.py: error: unrecognized arguments: --no-such-flag' in result.stderr
    assert 'torch' not in imported_modules(result.stderr)


@pytest.mark.parametrize('abbreviated, flag', [('--epoch', '--epochs'), ('--lr-step', '--lr-steps'),
                                               ('--warmup', '--warmup-epochs'), ('--over', '--overwrite')])
def test_abbreviations_are_refused(abbreviated, flag, capsys):
    """A prefix of a flag is not that flag: '--epoch 1' would have silently trained with --epochs 1."""
    with pytest.raises(SystemExit) as stop:
        train_script.parse_args([abbreviated, '1'] if flag != '--overwrite' else [abbreviated])
    assert stop.value.code == 2
    assert f'unrecognized arguments: {abbreviated}' in capsys.readouterr().err


RANGE_CASES = [
    ('train', '--img_h', '100000', 'expected 1 to 2048 pixels (the release uses 384x192), got 100000'),
    ('train', '--img_w', '0', 'expected 1 to 2048 pixels (the release uses 384x192), got 0'),
    ('test', '--img_h', '3000', 'expected 1 to 2048 pixels (the release uses 384x192), got 3000'),
    ('export', '--img_w', '-5', 'expected 1 to 2048 pixels (the release uses 384x192), got -5'),
    ('visualize', '--img_h', '99999', 'expected 1 to 2048 pixels (the release uses 384x192), got 99999'),
    ('bench', '--img_w', '1e3', "expected a whole number of pixels, got '1e3'"),
    ('train', '--lr', 'nan', "expected a finite number above 0, got 'nan'"),
    ('train', '--lr', '0', "expected a finite number above 0, got '0'"),
    ('train', '--lr', '-0.1', "expected a finite number above 0, got '-0.1'"),
    ('train', '--id-weight', '-1', "expected a finite number at least 0, got '-1'"),
    ('train', '--id-weight', 'NaN', "expected a finite number at least 0, got 'NaN'"),
    ('train', '--lambda_1', 'inf', "expected a finite number at least 0, got 'inf'"),
    ('train', '--lambda_1', '-0.7', "expected a finite number at least 0, got '-0.7'"),
    ('train', '--margin', 'x', "expected a number, got 'x'"),
    ('train', '--mia', '', "expected body layers among 1, 2, 3, comma-separated, such as 1,2,3 or 2,3, or 'none'; "
                           "got ''"),
]


@pytest.mark.parametrize('script, flag, value, message', RANGE_CASES)
def test_values_out_of_range_are_refused_when_parsed(script, flag, value, message, capsys):
    """NaN or negative weights, a zero rate, an image side that would exhaust memory, an empty --mia
    (which meant 'none' while 'none,1' was refused): each one line naming the flag, exit 2."""
    parse = {'train': train_script.parse_args, 'test': test_script.parse_args, 'export': export_script.parse_args,
             'visualize': visualize.parse_args, 'bench': bench.parse_args}[script]
    required = {'export': ['--resume', 'x.t', '--out', 'x.onnx'], 'visualize': ['rank', '--resume', 'x.t']}
    with pytest.raises(SystemExit) as stop:
        parse([*required.get(script, []), f'{flag}={value}'])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f'error: argument {flag}: {message}')


def test_the_edges_of_the_ranges_are_accepted():
    args = train_script.parse_args(['--img_h', '2048', '--img_w', '1', '--lr', '1e-6', '--id-weight', '0',
                                    '--lambda_1', '0', '--margin', '0', '--mia', 'none'])
    assert (args.img_h, args.img_w, args.lr, args.id_weight, args.lambda_1, args.margin, args.mia) == \
        (2048, 1, 1e-6, 0.0, 0.0, 0.0, ())


def test_the_help_states_the_component_records_defaults():
    """train.py parses its component switches without model.py (and torch); the defaults their help
    states are the records' (model.Architecture, loss.LossSwitches), which fill the switches left out."""
    parser = make_parser('')
    add_component_args(parser)
    helps = {action.dest: ' '.join(action.help.split()) for action in parser._actions
             if action.help and action.help != argparse.SUPPRESS}
    defaults = component_defaults()
    stated = {'middle': 'on' if defaults['middle'] else 'off', 'mfa': 'on' if defaults['mfa'] else 'off',
              'mia': ','.join(map(str, defaults['mia'])), 'triplet_pairs': defaults['triplet_pairs'],
              'id_weight': str(defaults['id_weight'])}
    for name, value in stated.items():
        assert helps[name].endswith(f'(default: {value})'), (name, helps[name])
    args = train_script.parse_args([])
    assert {name: getattr(args, name) for name in defaults} == defaults
