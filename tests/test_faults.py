"""Nothing lost, nothing silent: divergence, runs that would overwrite each other, signals, full or
read-only file systems, resume mismatches, partial test sets, deep images and damaged files."""
import contextlib
import errno
import io
import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import bench
import data_manager as dm
import demo
import process_sysu
import recipe
import synthetic
import test as test_script
import train as train_script
import visualize
from ifalnet import (atomic, interruption as interrupt, output_paths as outputs, partial_sets as coverage,
                     run_files as runs)
from ifalnet.atomic import atomic_write
from ifalnet.checkpoints import (nonfinite_tensors, read_checkpoint, refuse_nonfinite, resolve_checkpoint,
                                 save_checkpoint)
from ifalnet.features_file import Features
from ifalnet.toy_datasets import make_regdb, make_sysu
from tests.conftest import failing_writes
from utils import ReIDError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--img_h', '32', '--img_w', '16', '--workers', '0', '--test-batch', '32', '--gpu', '']
TRAIN = FAST + ['--pretrained', 'none', '--batch-size', '2', '--num_pos', '2', '--lr', '0.01', '--print-freq', '1']
NAME = 'sysu_p2_n2_lr_0.01_seed_0'


@pytest.fixture(scope='module')
def sysu_small(tmp_path_factory):
    # two training identities: 8 visible images, 3 steps an epoch
    root = make_sysu(tmp_path_factory.mktemp('sysu_faults'), train_ids=(1,), val_ids=(2,), test_ids=(5, 6, 7),
                     images_per_cam=1, size=(32, 16))
    process_sysu.prepare_sysu(root)
    return root


def train_args(out, data_path, *extra):
    return ['--dataset', 'sysu', '--data-path', str(data_path), '--model_path', str(out / 'models'),
            '--log_path', str(out / 'log'), '--vis_log_path', str(out / 'vis'), *TRAIN, *extra]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, sysu_small):
    """The _last.t of a one-epoch run (epoch 0)."""
    out = tmp_path_factory.mktemp('trained')
    train_script.main(train_args(out, sysu_small, '--epochs', '1'))
    return out / 'models' / f'{NAME}_last.t'


def copy_run(tmp_path, last):
    (tmp_path / 'models').mkdir()
    return shutil.copy(last, tmp_path / 'models' / last.name)


def temp_files(folder):
    return [f for f in os.listdir(folder) if f.endswith('.tmp')]


# ----------------------------------------------------------------------------------- divergence

def diverge_at_step(monkeypatch, step):
    """Make the loss NaN at this process's training step `step` (1: its first)."""
    real, calls = recipe.total_loss, []

    def diverging(*args, **kwargs):
        calls.append(1)
        loss, parts = real(*args, **kwargs)
        return (loss * float('nan'), parts) if len(calls) == step else (loss, parts)

    monkeypatch.setattr(recipe, 'total_loss', diverging)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, sysu_small, trained, monkeypatch):
    """A loss that is no longer finite (here at the resumed epoch 1's second step; a learning rate far too
    high does it for real) stops the run before anything of the epoch is saved."""
    last = copy_run(tmp_path, trained)
    before = open(last, 'rb').read()
    diverge_at_step(monkeypatch, 2)
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--resume', str(last)))
    assert re.fullmatch(r'training diverged: the loss is nan \(id \S+ tri \S+ tca \S+\) at epoch 1 step 2/3, learning '
                        r'rate 0.002; nothing of this epoch is saved \(the last _last.t, if any, is the last good '
                        r'state\); lower --lr', str(err.value)), str(err.value)
    assert sorted(os.listdir(tmp_path / 'models')) == [f'{NAME}_last.t']   # no _best.t, no lock, no temp file
    log = (tmp_path / 'log' / 'sysu_log' / f'{NAME}_os.txt').read_text()
    assert log.endswith(f'error: {err.value}\n')   # the log says why the run stopped, as the terminal does
    assert open(last, 'rb').read() == before
    assert not nonfinite_tensors(read_checkpoint(last)['net'])


def test_diverged_weights_are_refused_after_an_epoch():
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float('inf')
    with pytest.raises(ReIDError, match=r'^training diverged: after epoch 3: 1 of 2 weight tensors hold NaN or inf '
                                        r'values \(weight\); nothing'):
        refuse_nonfinite(net.state_dict(), 'training diverged: after epoch 3', '; nothing')


def test_test_refuses_nonfinite_weights_and_features(tmp_path, sysu_small, trained):
    ckpt = read_checkpoint(trained)
    state = {k: v.clone() for k, v in ckpt['net'].items()}
    state['classifier.weight'][0, 0] = float('nan')
    state['bottleneck.weight'][:] = float('inf')
    save_checkpoint({'net': state, 'epoch': 0}, tmp_path / 'nan.t')
    argv = ['--dataset', 'sysu', '--data-path', str(sysu_small), '--trials', '0', *FAST]
    with pytest.raises(ReIDError) as err:
        test_script.main([*argv, '--resume', str(tmp_path / 'nan.t')])
    assert str(err.value).startswith(f'{tmp_path / "nan.t"}: 2 of {len(state)} weight tensors hold NaN or inf values (')
    assert 'classifier.weight' in str(err.value) and 'bottleneck.weight' in str(err.value)
    # Finite weights whose features are not (a negative running variance): an error, not a table.
    state = dict(ckpt['net'], **{'bottleneck.running_var': -torch.ones(2048)})
    save_checkpoint({'net': state, 'epoch': 0}, tmp_path / 'nan_features.t')
    with pytest.raises(ReIDError, match=r'^the network produces NaN/inf features \(\d+ of \d+ query infrared images\)'):
        test_script.main([*argv, '--resume', str(tmp_path / 'nan_features.t'), '--results', str(tmp_path / 'r.json')])
    assert not (tmp_path / 'r.json').exists()


# ----------------------------------------------------------------------------------- one run, one set of files

def test_a_fresh_run_refuses_to_overwrite_a_run_and_the_ways_out(tmp_path, sysu_small, trained, capsys):
    copy_run(tmp_path, trained)
    models = tmp_path / 'models'
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--margin', '0.5'))
    assert str(err.value) == (
        f'--model_path {models} already holds the run {NAME} ({NAME}_last.t, trained to epoch 0); arguments that '
        'differ from it: --epochs 2 (that run: 1), --margin 0.5 (that run: 0.3). Continue it with --resume auto '
        f'(or --resume {models / NAME}_last.t) and the values it was trained with, give this run its own name with '
        '--run-name NAME, or replace it with --overwrite')
    assert os.listdir(models) == [f'{NAME}_last.t'] and not (tmp_path / 'log').exists()

    # --resume auto on a finished run: nothing left to train. A dead process's lock is taken over and
    # the temporary file of a killed write is removed.
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (models / f'{NAME}.lock').write_text(json.dumps({'host': socket.gethostname(), 'pid': dead.pid}))
    (models / f'.{NAME}_last.t.abc123_x.tmp').write_bytes(b'half')
    (models / f'.{NAME}_adam_last.t.abc123_x.tmp').write_bytes(b'another run')
    capsys.readouterr()
    train_script.main(train_args(tmp_path, sysu_small, '--epochs', '1', '--resume', 'auto'))
    out = capsys.readouterr().out
    assert f'--resume auto: continuing from {models / NAME}_last.t' in out
    assert f'note: taking over the lock {models / NAME}.lock of process {dead.pid} on {socket.gethostname()}, ' \
           'which is gone' in out
    assert f'note: removed 1 temporary file(s) left by an interrupted write: {models}/.{NAME}_last.t.abc123_x.tmp' in out
    assert f'nothing is left to train: {models / NAME}_last.t holds epoch 0, the last of --epochs 1' in out
    assert sorted(os.listdir(models)) == sorted([f'{NAME}_last.t', f'.{NAME}_adam_last.t.abc123_x.tmp'])

    # A run of its own name starts afresh under --resume auto; --overwrite replaces a run's checkpoints
    # (one training run for both: the ablation's stale _last.t is replaced by a fresh epoch 0).
    shutil.copy(models / f'{NAME}_last.t', models / 'ablation_last.t')
    old = os.stat(models / 'ablation_last.t').st_mtime_ns
    args = train_script.parse_args(train_args(tmp_path, sysu_small, '--resume', 'auto', '--run-name', 'fresh'))
    assert runs.resolve_resume(args) == ''
    assert f'--resume auto: no {models}/fresh_last.t yet, starting afresh' in capsys.readouterr().out
    train_script.main(train_args(tmp_path, sysu_small, '--epochs', '1', '--run-name', 'ablation', '--overwrite',
                                 '--margin', '0.5'))
    out = capsys.readouterr().out
    assert f"--overwrite: the earlier run's ablation_last.t are kept in {models}/.ablation_replaced until this run " \
           "saves its first ablation_last.t, then removed" in out
    assert f"--overwrite: removed the earlier run's checkpoints ({models}/.ablation_replaced)" in out
    ckpt = read_checkpoint(models / 'ablation_last.t')
    assert ckpt['args']['margin'] == 0.5 and ckpt['args']['run_name'] == 'ablation'
    assert os.stat(models / 'ablation_last.t').st_mtime_ns != old
    assert (tmp_path / 'log' / 'sysu_log' / 'ablation_os.txt').is_file()
    assert not [f for f in os.listdir(models) if f.endswith('.lock')]


def test_a_resume_refuses_other_training_arguments(tmp_path, sysu_small, trained, capsys):
    copy_run(tmp_path, trained)
    last = tmp_path / 'models' / f'{NAME}_last.t'
    before = last.read_bytes()
    for resume in ('auto', str(last)):
        with pytest.raises(ReIDError) as err:
            train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--resume', resume,
                                         '--img_w', '24', '--margin', '0.5'))
        assert str(err.value) == (
            f'{last} was trained with other arguments than this run: --img_w 24 (that run: 16), --margin 0.5 '
            '(that run: 0.3). Resume it with the values it was trained with, or start a new run with its own '
            '--run-name NAME')
    assert last.read_bytes() == before and not (tmp_path / 'log').exists()
    # More epochs are what a resume is for.
    train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--resume', 'auto'))
    assert read_checkpoint(last)['epoch'] == 1


def test_an_overwrite_stopped_before_its_first_save_puts_the_earlier_run_back(tmp_path, sysu_small, trained,
                                                                                 monkeypatch, capsys):
    """Whatever ends a replacing run before its first _last.t (an error, a signal, a kill), the earlier
    run is there whole afterwards, and nothing of the replacement is."""
    last = copy_run(tmp_path, trained)
    models, before = tmp_path / 'models', last.read_bytes()
    shutil.copy(last, models / f'{NAME}_best.t')
    earlier = sorted(os.listdir(models))

    def earlier_run_is_back():
        assert sorted(os.listdir(models)) == earlier and last.read_bytes() == before

    # An error in the first epoch (a divergence at its second step)
    diverge_at_step(monkeypatch, 2)
    with pytest.raises(ReIDError, match='^training diverged'):
        train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--overwrite', '--margin', '0.5'))
    assert f"--overwrite: this run ended before saving its first checkpoint; the earlier run's {NAME}_best.t, " \
           f"{NAME}_last.t are back in {models}" in capsys.readouterr().out
    earlier_run_is_back()

    # SIGTERM at the first epoch's second step: one line, the earlier run back
    proc = start_train(tmp_path, sysu_small, '--epochs', '2', '--overwrite', '--margin', '0.5',
                       helper='signal_at_step', env={'STEP_SIGNAL': 'SIGTERM', 'AT_STEP': '2'})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err == (
        'interrupted by SIGTERM at epoch 0 step 2/3; no epoch was saved yet and the earlier run is kept: run the '
        'same command again\n'), err
    earlier_run_is_back()

    # SIGKILL: the earlier run waits aside; the next start of the run puts it back before anything else
    proc = start_train(tmp_path, sysu_small, '--epochs', '2', '--overwrite', '--margin', '0.5',
                       helper='signal_at_step', env={'STEP_SIGNAL': 'SIGKILL', 'AT_STEP': '2'})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(os.listdir(models / f'.{NAME}_replaced')) == [f'{NAME}_best.t', f'{NAME}_last.t']
    with pytest.raises(ReIDError, match='^--model_path .* already holds the run'):
        train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--margin', '0.5'))
    assert "--overwrite: the replacing run was stopped before saving its first checkpoint; the earlier run's " \
           f"{NAME}_best.t, {NAME}_last.t are back in {models}" in capsys.readouterr().out
    earlier_run_is_back()


def test_a_replacement_killed_after_its_first_save_is_the_run_that_stays(tmp_path, trained, capsys):
    """Killed between its first _last.t and the removal of the earlier run: the new run is whole, the
    earlier one goes at the next start."""
    models = tmp_path / 'models'
    aside = models / f'.{NAME}_replaced'
    aside.mkdir(parents=True)
    shutil.copy(trained, aside / f'{NAME}_last.t')
    shutil.copy(trained, models / f'{NAME}_last.t')
    args = train_script.parse_args(['--dataset', 'sysu', '--model_path', str(models), '--resume', 'auto'])
    with runs.claim(args, NAME) as held:
        assert not held.pending
    assert sorted(os.listdir(models)) == [f'{NAME}_last.t']
    assert f'note: removed {aside}, the earlier run an --overwrite replaced' in capsys.readouterr().out


@pytest.mark.parametrize('owner', ['live process here', 'another host'])
def test_a_concurrent_run_of_the_same_name_refuses_by_its_lock(tmp_path, sysu_small, owner):
    (tmp_path / 'models').mkdir()
    lock = tmp_path / 'models' / f'{NAME}.lock'
    with subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) as other:
        try:
            host = socket.gethostname() if owner == 'live process here' else 'node17'
            lock.write_text(json.dumps({'host': host, 'pid': other.pid, 'started': '2026-01-01 10:00:00'}))
            with pytest.raises(ReIDError) as err:
                train_script.main(train_args(tmp_path, sysu_small, '--epochs', '1'))
        finally:
            other.kill()
    assert str(err.value).startswith(f'the run is already being trained by process {other.pid} on {host} (since '
                                     f'2026-01-01 10:00:00): its lock file {lock} exists')
    assert os.listdir(tmp_path / 'models') == [lock.name] and not (tmp_path / 'log').exists()


def test_run_name_is_checked(tmp_path, sysu_small):
    with pytest.raises(ReIDError, match=r"--run-name '../x': expected a file stem"):
        train_script.main(train_args(tmp_path, sysu_small, '--run-name', '../x'))


@pytest.mark.parametrize('length', [235, 300])
def test_a_run_name_too_long_for_the_file_system_is_refused_before_any_work(tmp_path, sysu_small, length):
    """235 characters: the checkpoints' own names fit, their temporary names do not (this used to fail at
    the first save, an epoch later); 300: nothing fits (this used to be a traceback at the lock)."""
    name = 'r' * length
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, sysu_small, '--epochs', '2', '--run-name', name))
    longest = f'.{name}_epoch_1.t.xxxxxxxx.tmp'
    assert len(f'{name}_epoch_1.t') <= outputs.name_max(tmp_path) < len(longest) or length == 300
    assert str(err.value) == (
        f'--run-name {name} ({length} characters) is too long for {tmp_path / "models"}: the run\'s file {longest} '
        f'would have {len(longest)} characters, and the file system allows {outputs.name_max(tmp_path)}; give a '
        'shorter --run-name')
    assert not [p for p in ('models', 'log', 'vis') if (tmp_path / p).exists()]
    # The longest name the check assumes is the longest the atomic writer makes.
    fd, tmp = atomic.temp_file_beside(tmp_path / ('s' * 200 + '.t'))
    os.close(fd)
    os.remove(tmp)
    assert len(os.path.basename(tmp)) == len(atomic.temp_name('s' * 200 + '.t'))


def test_a_log_that_cannot_be_written_leaves_training_running(tmp_path, sysu_small, capsys):
    """The log on a full disk (/dev/full: every write fails with ENOSPC): one warning on the console and
    the run trains and saves on; the log used to stop it with three chained tracebacks."""
    log = tmp_path / 'log' / 'sysu_log' / f'{NAME}_os.txt'
    log.parent.mkdir(parents=True)
    log.symlink_to('/dev/full')
    train_script.main(train_args(tmp_path, sysu_small, '--epochs', '1'))
    out = capsys.readouterr().out
    assert out.count(f'warning: cannot write {log}: No space left on device [ENOSPC]; the log stops here and the run '
                     'goes on, printing to this console only') == 1 == out.count('cannot write')
    assert 'epoch 0 done' in out and read_checkpoint(tmp_path / 'models' / f'{NAME}_last.t')['epoch'] == 0


# ----------------------------------------------------------------------------------- signals

def start_train(tmp_path, sysu_small, *extra, helper=None, env=None):
    """train.py, or through a helper of tests/helpers/ ('signal_during_save', 'signal_at_step')."""
    script = [os.path.join('tests', 'helpers', f'{helper}.py')] if helper else ['train.py']
    return subprocess.Popen([sys.executable, *script, *train_args(tmp_path, sysu_small, *extra)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


def wait_for(proc, text):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f'{text!r} never printed:\n' + ''.join(lines) + proc.stderr.read())


def test_sigterm_at_a_step_with_loader_workers_leaves_the_resume_point(tmp_path, sysu_small, trained):
    last = copy_run(tmp_path, trained)
    before = open(last, 'rb').read()
    # SIGTERM to the whole process group (as a scheduler sends it, loader workers included) at step 2
    proc = start_train(tmp_path, sysu_small, '--epochs', '2', '--workers', '2', '--resume', 'auto',
                       helper='signal_at_step', env={'STEP_SIGNAL': 'SIGTERM', 'AT_STEP': '2'})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert re.fullmatch(rf'interrupted by SIGTERM at epoch 1 step 2/3; resume with --resume {re.escape(str(last))}\n',
                        err), err
    assert (tmp_path / 'log' / 'sysu_log' / f'{NAME}_os.txt').read_text().endswith(err)
    assert 'Traceback' not in out
    assert sorted(os.listdir(tmp_path / 'models')) == [last.name]   # no temp file, no lock
    # The resume point is epoch 0's, untouched (test_pipeline checks that a resume continues exactly).
    assert open(last, 'rb').read() == before and read_checkpoint(last)['epoch'] == 0


def test_sigint_before_anything_is_saved(tmp_path, sysu_small):
    proc = start_train(tmp_path, sysu_small, '--epochs', '1', helper='signal_at_step',
                       env={'STEP_SIGNAL': 'SIGINT', 'AT_STEP': '2'})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert re.fullmatch(r'interrupted by SIGINT at epoch 0 step 2/3; no epoch was saved yet: run the same command '
                        r'again \(or add --resume auto\)\n', err), err
    assert not (tmp_path / 'models').exists()   # the folder it made for the run is gone again


@pytest.mark.parametrize('name, status', [('SIGINT', 130)])   # SIGTERM: test_deferred_signals_arrive_after_the_block
def test_a_signal_during_a_save_lets_the_save_finish(tmp_path, sysu_small, name, status):
    proc = start_train(tmp_path, sysu_small, '--epochs', '2', helper='signal_during_save', env={'SAVE_SIGNAL': name})
    out, err = proc.communicate(timeout=180)
    last = tmp_path / 'models' / f'{NAME}_last.t'
    assert proc.returncode == status, err
    assert err == f'interrupted by {name} at epoch 0, after its last step; resume with --resume {last}\n'
    assert sorted(os.listdir(tmp_path / 'models')) == [last.name]
    assert read_checkpoint(last)['epoch'] == 0   # complete: the resume point of epoch 0


def test_deferred_signals_arrive_after_the_block():
    previous = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    try:
        interrupt.install()
        order = []
        with pytest.raises(interrupt.Interrupted) as err:
            with interrupt.deferred():
                signal.raise_signal(signal.SIGTERM)
                order.append('block finished')
        assert order == ['block finished'] and err.value.exit_status == 143 and str(err.value) == 'interrupted by SIGTERM'
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------------- outputs

@contextlib.contextmanager
def small_file_system(folder, options):
    """A tmpfs mounted at `folder` where this test may mount one (root), else None."""
    folder.mkdir()
    mounted = os.geteuid() == 0 and shutil.which('mount') and subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)], capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(['umount', '-l', str(folder)], check=True)


def test_a_full_disk_is_one_line_at_the_write_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    with small_file_system(tmp_path / 'full', 'size=256k') as fs:
        folder = fs or tmp_path / 'full'
        save_checkpoint({'net': {'w': torch.ones(10)}}, folder / 'model.t')
        atomic_write(folder / 'f.npz', lambda f: np.savez(f, a=np.ones(3)))
        if fs is None:
            failing_writes(monkeypatch, errno.ENOSPC, after=1000)
        for path, write in ((folder / 'model.t', lambda: save_checkpoint({'net': {'w': torch.ones(200_000)}},
                                                                            folder / 'model.t')),
                            (folder / 'f.npz', lambda: atomic_write(folder / 'f.npz',
                                                                    lambda f: np.savez(f, a=np.ones(100_000))))):
            with pytest.raises(ReIDError) as err:
                write()
            assert str(err.value) == f'cannot write {path}: No space left on device [ENOSPC]'
        monkeypatch.undo()
        assert torch.equal(read_checkpoint(folder / 'model.t')['net']['w'], torch.ones(10))
        assert np.load(folder / 'f.npz')['a'].shape == (3,) and not temp_files(folder)


@pytest.mark.parametrize('case', ['read-only model_path', 'file model_path', 'results folder', 'features in a file',
                                  'visualize out', 'synthetic out', 'demo workdir', 'bench json'])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, monkeypatch, sysu_small, trained, case):
    with small_file_system(tmp_path / 'ro', 'ro,size=64k') as fs:
        if fs is None and case in ('read-only model_path', 'visualize out'):   # no mount here: mocked at the check
            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            monkeypatch.setattr(outputs.tempfile, 'mkstemp', read_only)
        (tmp_path / 'file').write_text('x')
        test_argv = ['--dataset', 'sysu', '--data-path', str(sysu_small), '--resume', str(trained), *FAST]
        run, message = {
            'read-only model_path': (
                lambda: train_script.main(train_args(tmp_path, sysu_small) + ['--model_path', str(tmp_path / 'ro/m')]),
                f'--model_path {tmp_path}/ro/m: cannot write {tmp_path}/ro: Read-only file system [EROFS]'),
            'file model_path': (
                lambda: train_script.main(train_args(tmp_path, sysu_small) + ['--model_path', str(tmp_path / 'file')]),
                f'--model_path {tmp_path}/file is a file; expected a folder'),
            'results folder': (lambda: test_script.main([*test_argv, '--results', str(tmp_path)]),
                               f'--results {tmp_path} is a folder; expected a file name'),
            'features in a file': (lambda: test_script.main([*test_argv, '--save-features', str(tmp_path / 'file/f.npz')]),
                                   f'--save-features {tmp_path}/file/f.npz is inside {tmp_path}/file, which is a file; '
                                   'expected a file in a folder'),
            'visualize out': (lambda: visualize.main(['cmc', str(tmp_path / 'r.json'), '--out', str(tmp_path / 'ro/c.png')]),
                              f'--out {tmp_path}/ro/c.png: cannot write {tmp_path}/ro: Read-only file system [EROFS]'),
            # these three used to be a traceback (synthetic.py, demo.py) or to fail after the measurements (bench.py)
            'synthetic out': (lambda: synthetic.main(['--dataset', 'regdb', '--out', str(tmp_path / 'file/d')]),
                              f'--out {tmp_path}/file/d is inside {tmp_path}/file, which is a file; expected a folder'),
            'demo workdir': (lambda: demo.main(['--quick', '--workdir', str(tmp_path / 'file/w')]),
                             f'--workdir {tmp_path}/file/w is inside {tmp_path}/file, which is a file; expected a folder'),
            'bench json': (lambda: bench.main(['--parts', 'metrics', '--json', str(tmp_path / 'file/b.json')]),
                           f'--json {tmp_path}/file/b.json is inside {tmp_path}/file, which is a file; expected a '
                           'file in a folder'),
        }[case]
        with pytest.raises(ReIDError) as err:
            run()
        assert str(err.value) == message
        assert not (tmp_path / 'log').exists() and not (tmp_path / 'models').exists()


# ----------------------------------------------------------------------------------- resume mismatches

def test_resuming_another_optimizers_state_is_refused_before_anything(tmp_path, sysu_small, trained):
    ckpt = read_checkpoint(trained)
    groups = [{'lr': 0.01, 'betas': (0.9, 0.999), 'eps': 1e-8, 'weight_decay': 5e-4, 'params': [i]} for i in range(3)]
    del ckpt['optimizer']
    save_checkpoint({**ckpt, 'optimizer': {'state': {}, 'param_groups': groups}}, tmp_path / 'adam_last.t')
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, sysu_small, '--resume', str(tmp_path / 'adam_last.t')))
    assert str(err.value) == (f'{tmp_path}/adam_last.t holds the optimizer state of --optim adam, which does not fit '
                              '--optim sgd: resume with --optim adam, or start a new run (--run-name NAME)')
    # another dataset's checkpoint (another class count) is refused before the log exists too
    ckpt['net']['classifier.weight'] = torch.zeros(7, 2048)
    save_checkpoint({'net': ckpt['net'], 'epoch': 0}, tmp_path / 'other.t')
    with pytest.raises(ReIDError, match=r'other.t has 7 classes \(its classifier\), but the SYSU-MM01 training set at .* has 2: '):
        train_script.main(train_args(tmp_path, sysu_small, '--resume', str(tmp_path / 'other.t')))
    assert not (tmp_path / 'log').exists() and not (tmp_path / 'models').exists()


# ----------------------------------------------------------------------------------- partial test sets

def test_an_incomplete_test_set_is_a_loud_warning_or_with_strict_an_error(tmp_path, sysu_small, trained, capsys):
    root = tmp_path / 'SYSU-MM01'
    shutil.copytree(sysu_small, root, ignore=shutil.ignore_patterns('*.npy'))
    shutil.rmtree(root / 'cam6')
    shutil.rmtree(root / 'cam3' / '0006')   # identity 6 has no infrared image left
    argv = ['--dataset', 'sysu', '--data-path', str(root), '--resume', str(trained), '--trials', '0', *FAST]
    gaps = ['1 camera folder(s) of the protocol missing: cam6', '1 of 3 test identities have no query image: 0006']
    with pytest.raises(ReIDError) as err:
        test_script.main([*argv, '--strict'])
    assert str(err.value) == f'--strict: the test set in {root} is incomplete: ' + '; '.join(gaps)
    assert 'embedded' not in capsys.readouterr().out
    test_script.main([*argv, '--results', str(tmp_path / 'r.json')])
    out = capsys.readouterr().out
    assert f'WARNING: the test set in {root} is incomplete' in out and all(f'  {g}\n' in out for g in gaps)
    assert json.loads((tmp_path / 'r.json').read_text())['warnings'] == gaps


def test_complete_test_sets_have_no_gaps_and_regdb_counts_listed_images(tmp_path, sysu_root, llcm_root, regdb_root):
    # The shared fixtures lack some (identity, camera) folders, as the real datasets do: no gap.
    assert coverage.test_set_gaps('sysu', sysu_root, range(10)) == []
    assert coverage.test_set_gaps('sysu', sysu_root, [0], mode='indoor') == []
    assert coverage.test_set_gaps('llcm', llcm_root, [0, 1]) == []
    assert coverage.test_set_gaps('regdb', regdb_root, [1, 2]) == []
    regdb = make_regdb(tmp_path / 'regdb', num_ids=4, images_per_id=1, size=(16, 8))
    paths, _ = dm.process_test_regdb(regdb, 1, 'thermal')
    os.remove(paths[0])
    assert coverage.test_set_gaps('regdb', regdb, [1]) == [f'1 listed test image(s) do not exist: {paths[0]}']


# ----------------------------------------------------------------------------------- images and files

@pytest.mark.parametrize('mode, fmt', [('I;16', 'PNG'), ('I', 'TIFF'), ('F', 'TIFF')])
def test_deep_images_are_scaled_to_8_bits_by_their_range(tmp_path, mode, fmt):
    values = np.linspace(1000, 3000, 32 * 16).reshape(32, 16)
    path = tmp_path / f'deep.{fmt.lower()}'
    dtype = {'I;16': np.uint16, 'I': np.int32, 'F': np.float32}[mode]
    Image.fromarray(values.astype(dtype)).save(path, fmt)
    assert Image.open(path).mode in dm.DEEP_MODES
    img = np.asarray(dm.open_rgb(path))
    assert img.shape == (32, 16, 3) and img.dtype == np.uint8
    assert img.min() == 0 and img.max() == 255 and (np.diff(img[..., 0].ravel().astype(int)) >= 0).all()
    expected = np.rint((values - 1000) * 255 / 2000)
    assert np.abs(img[..., 0] - expected).max() <= 1


def test_a_nonfinite_float_image_is_refused(tmp_path):
    values = np.ones((8, 4), np.float32)
    values[0, 0] = np.nan
    Image.fromarray(values).save(tmp_path / 'nan.tiff')
    with pytest.raises(ReIDError, match=r'cannot read image .*nan.tiff: it holds NaN or inf values'):
        dm.open_rgb(tmp_path / 'nan.tiff')


class Foreign:
    pass


@pytest.mark.parametrize('case', ['empty', 'folder', 'foreign', 'garbage', 'truncated', 'plain pickle'])
def test_bad_checkpoint_files_are_one_clear_line(tmp_path, case):
    path = tmp_path / 'c.t'
    good = tmp_path / 'good.t'
    torch.save({'net': {'w': torch.zeros(1000)}}, good)
    write = {'empty': lambda: path.write_bytes(b''), 'folder': lambda: path.mkdir(),
             'foreign': lambda: torch.save({'net': {}, 'obj': Foreign()}, path),
             'garbage': lambda: path.write_bytes(b'hello, not a checkpoint'),
             'truncated': lambda: path.write_bytes(good.read_bytes()[:2000]),
             'plain pickle': lambda: path.write_bytes(pickle.dumps({'net': {'w': Foreign}}))}[case]
    write()
    expected = {'empty': f'cannot read checkpoint {path}: the file is empty (0 bytes)',
                'folder': f'{path} is a folder; expected a checkpoint file',
                'foreign': f'cannot read checkpoint {path}: it holds objects other than tensors and plain values (',
                'garbage': f'cannot read checkpoint {path}: not a PyTorch checkpoint file (',
                'truncated': f'cannot read checkpoint {path}: the file is damaged or incomplete',
                'plain pickle': f'cannot read checkpoint {path}: it holds objects other than tensors and plain values ('}
    with pytest.raises(ReIDError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(expected[case]) and '\n' not in message and 'weights_only' not in message, message
    if case == 'folder':   # --resume with a folder says so too (and what folder it would take)
        with pytest.raises(ReIDError, match=f'^{re.escape(str(path))} is a folder; expected a checkpoint file, or a '
                                            'model folder of export.py --format safetensors \\(it has no config.json\\)$'):
            resolve_checkpoint(str(path), str(tmp_path))


class Hostile:
    def __reduce__(self):
        return (os.system, ('touch PWNED',))


def test_a_hostile_pretrained_file_is_refused_in_one_line_before_any_work(tmp_path, sysu_small, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'conv1.weight': Hostile()}, tmp_path / 'r50.pth')
    with pytest.raises(ReIDError) as err:
        train_script.main(train_args(tmp_path, sysu_small, '--pretrained', str(tmp_path / 'r50.pth')))
    assert str(err.value).startswith(f'cannot read ImageNet weights from {tmp_path / "r50.pth"}: it holds objects other '
                                     'than tensors and plain values (')
    assert 'weights_only' not in str(err.value) and '\n' not in str(err.value)
    assert not (tmp_path / 'PWNED').exists() and not (tmp_path / 'models').exists() and not (tmp_path / 'log').exists()


def test_zero_byte_and_nonfinite_arrays_are_refused(tmp_path, sysu_small):
    root = tmp_path / 'SYSU-MM01'
    shutil.copytree(sysu_small, root)
    (root / 'train_rgb_resized_label.npy').write_bytes(b'')
    with pytest.raises(ReIDError, match=r'train_rgb_resized_label.npy is empty \(0 bytes\); run `python process_sysu.py'):
        train_script.main(train_args(tmp_path, root))
    assert not (tmp_path / 'log').exists()
    (tmp_path / 'f.npz').write_bytes(b'')
    with pytest.raises(ReIDError, match=r'f.npz is empty \(0 bytes\); expected a features file'):
        Features(tmp_path / 'f.npz')
    with pytest.raises(ReIDError, match=r'is a folder; expected a features file'):
        Features(tmp_path)


def test_index_and_id_files_with_a_byte_order_mark(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(b'')
    (tmp_path / 'idx.txt').write_text('a.jpg 3\n', encoding='utf-8-sig')
    paths, labels = dm.read_index_file(str(tmp_path / 'idx.txt'), str(tmp_path), 'layout')
    assert paths == [os.path.join(str(tmp_path), 'a.jpg')] and os.path.isfile(paths[0]) and labels.tolist() == [3]
    (tmp_path / 'ids.txt').write_text('5,7\n', encoding='utf-8-sig')
    assert dm.read_id_file(str(tmp_path / 'ids.txt'), 'layout') == ['0005', '0007']


def test_process_sysu_removes_the_temporary_files_of_a_killed_run(tmp_path, capsys):
    root = pathlib.Path(make_sysu(tmp_path / 'SYSU-MM01', train_ids=(1, 2), val_ids=(3,), test_ids=(4,),
                                  images_per_cam=1, size=(16, 8)))
    stale = root / '.train_rgb_resized_img.npy.k1ll3d_0.tmp'
    other = root / '.notes.txt.k1ll3d_0.tmp'
    stale.write_bytes(b'x' * 100)
    other.write_bytes(b'not ours')
    process_sysu.prepare_sysu(root, 16, 8)
    assert f'note: removed 1 temporary file(s) left by an interrupted write: {stale}' in capsys.readouterr().out
    assert not stale.exists() and other.exists()


def test_process_sysu_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    with small_file_system(tmp_path / 'full', 'size=512k') as fs:
        root = pathlib.Path(make_sysu((fs or tmp_path / 'full') / 'SYSU-MM01', train_ids=(1, 2), val_ids=(3,),
                                      test_ids=(4,), images_per_cam=1, size=(16, 8)))
        if fs is None:
            def full(*args):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(process_sysu.os, 'posix_fallocate', full)
        with pytest.raises(ReIDError) as err:
            process_sysu.prepare_sysu(root)   # 12 visible images at 384x192: 2.7 MB
        assert str(err.value) == f'cannot write {root / "train_rgb_resized_img.npy"}: No space left on device [ENOSPC]'
        assert not temp_files(root) and not list(root.glob('*.npy'))


def test_process_sysu_failing_at_an_arrays_header_is_one_line(tmp_path, monkeypatch):
    root = pathlib.Path(make_sysu(tmp_path / 'SYSU-MM01', train_ids=(1, 2), val_ids=(3,), test_ids=(4,),
                                  images_per_cam=1, size=(16, 8)))

    def full(*args, **kwargs):   # the disk fills while the header is written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(process_sysu.np.lib.format, 'open_memmap', full)
    with pytest.raises(ReIDError) as err:
        process_sysu.prepare_sysu(root)
    assert str(err.value) == f'cannot write {root / "train_rgb_resized_img.npy"}: No space left on device [ENOSPC]'
    assert not temp_files(root) and not list(root.glob('*.npy'))


# ----------------------------------------------------------------------------------- one lock holder
def contend(path, stale, starters, barrier, held, rounds, pause=0.002):
    """`starters` threads of this process, `rounds` times over a lock file left by a dead process: each
    tries to take it at once (behind `barrier`) and, holding it, records (round, start, end)."""
    def starter():
        for r in range(rounds):
            if barrier.wait() == 0:   # one of them writes the stale lock of the round
                path.write_text(json.dumps(stale))
            barrier.wait()
            try:
                with contextlib.redirect_stdout(io.StringIO()), runs.run_lock(str(path)):
                    start = time.monotonic()
                    time.sleep(pause)
                    held.append((r, start, time.monotonic()))
            except ReIDError:
                pass
    threads = [threading.Thread(target=starter) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_one_lock_holder_among_simultaneous_starters_over_a_stale_lock(tmp_path):
    """Taking over a stale lock used to read it, remove it and create a new one: a second starter that had
    read the same stale lock removed the first one's new lock and made its own (two holders in 38 of
    100 rounds with three starters). Now in no round do two holders overlap, and someone always wins."""
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = {'host': socket.gethostname(), 'pid': dead.pid, 'started': '2026-01-01 10:00:00'}
    held, rounds = [], 100
    contend(tmp_path / 'run.lock', stale, 3, threading.Barrier(3), held, rounds)
    by_round = {}
    for r, start, end in held:
        by_round.setdefault(r, []).append((start, end))
    assert sorted(by_round) == list(range(rounds))
    for r, spans in by_round.items():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f'round {r}: two holders at once {spans}'
    assert not (tmp_path / 'run.lock').exists()


def test_one_lock_holder_among_processes(tmp_path):
    """The same across processes, as a scheduler restarting two jobs of one run would start them: a holder
    blocks the others until its process ends, whatever way it ends (the kernel drops the lock)."""
    path = tmp_path / 'run.lock'
    code = ('import sys, time, contextlib, io; sys.path.insert(0, sys.argv[1]); from ifalnet import run_files\n'
            'with run_files.run_lock(sys.argv[2]):\n    print("held", flush=True); time.sleep(30)\n')
    holder = subprocess.Popen([sys.executable, '-c', code, ROOT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'held\n'
        with pytest.raises(ReIDError, match=f'already being trained by process {holder.pid} on '):
            with runs.run_lock(str(path)):
                pass
    finally:
        holder.kill()   # SIGKILL: no clean-up of its own; the file stays, the flock goes with the process
        holder.wait()
    assert path.exists()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), runs.run_lock(str(path)):
        assert json.loads(path.read_text())['pid'] == os.getpid()
    assert f'taking over the lock {path} of process {holder.pid}' in out.getvalue() and not path.exists()
