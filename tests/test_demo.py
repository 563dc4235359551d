"""demo.py end to end: synthetic data, process_sysu.py, test.py, train.py from scratch, test.py, run as
its quick smoke run (the full demo takes 4 to 11 minutes on 2 CPU cores; that training from scratch
learns what carries over to unseen identities is test_train_and_test.py's, in a fifth of the time).
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = {'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP'}


def run_demo(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'demo.py'), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=1500)


def test_demo_refuses_a_dataset_it_did_not_make(tmp_path):
    (tmp_path / 'SYSU-MM01' / 'cam1').mkdir(parents=True)
    result = run_demo('--workdir', str(tmp_path), '--quick')
    assert result.returncode == 2
    assert f'{tmp_path / "SYSU-MM01"} exists and was not made by demo.py' in result.stderr
    assert 'Traceback' not in result.stderr
    assert (tmp_path / 'SYSU-MM01' / 'cam1').is_dir()   # left alone


@pytest.mark.slow('the quick demo')
def test_quick_demo_runs_every_step_and_replaces_its_own_data(tmp_path):
    earlier = tmp_path / 'SYSU-MM01'   # the dataset of an earlier demo run, with a file of its own
    demo.make_dataset(str(earlier), demo.SETTINGS['quick'], seed=1)
    (earlier / 'left_by_the_earlier_run').write_text('')
    result = run_demo('--workdir', str(tmp_path), '--quick', '--gpu', 'cpu')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (earlier / 'left_by_the_earlier_run').exists() and (earlier / demo.MARKER).is_file()
    with open(tmp_path / 'results.json') as f:
        results = json.load(f)
    assert set(results) == {'untrained', 'trained', 'environment'} and set(results['trained']['ALL']) == SCORES
    # a smoke run's numbers, not a gain (one epoch on four identities learns nothing)
    assert 'ALL scores of the smoke run (--quick: every step ran;' in result.stdout and 'gain' not in result.stdout
    assert re.search(r'^demo: epoch 0 took \d+s; about \d+ min left$', result.stdout, re.MULTILINE)
    # Every command is printed as it can be pasted into a shell: the interpreter first, then the script.
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith('$ ')]
    assert [shlex.split(c)[1].rsplit(os.sep, 1)[-1] for c in commands] == ['process_sysu.py', 'test.py', 'train.py',
                                                                           'test.py']
    assert all(shlex.split(c)[0] == sys.executable for c in commands)
    # Pasted into a shell elsewhere, the last one (test the trained model) runs and writes the same scores.
    with open(tmp_path / 'results_trained.json') as f:
        demo_scores = json.load(f)['mean']
    (tmp_path / 'elsewhere').mkdir()
    pasted = subprocess.run(commands[-1], shell=True, cwd=tmp_path / 'elsewhere', capture_output=True, text=True,
                            timeout=600)
    assert pasted.returncode == 0, pasted.stderr[-3000:]
    with open(tmp_path / 'results_trained.json') as f:
        assert json.load(f)['mean'] == demo_scores


def test_demo_estimates_the_time_left_and_suggests_quick_when_long(capsys):
    estimate = demo.TimeLeft(epochs=10, test_seconds=30, quick=False)
    estimate('Epoch: [0][25/25] time 95.1s\n')          # not the end of an epoch: nothing
    assert capsys.readouterr().out == ''
    estimate('epoch 0 done in 120.0s\n')                # 9 x (120 + 3) + 30 seconds
    out = capsys.readouterr().out
    assert out.startswith('demo: epoch 0 took 120s; about 19 min left (this machine is slower or busier than ')
    assert '`python3 demo.py --quick` runs every step in about a minute' in out
    estimate('epoch 0 done in 120.0s\n')                # said once
    assert capsys.readouterr().out == ''
    demo.TimeLeft(epochs=10, test_seconds=30, quick=False)('epoch 0 done in 30.0s\n')
    assert capsys.readouterr().out == 'demo: epoch 0 took 30s; about 5 min left\n'


def test_a_demo_run_again_keeps_its_data_and_resumes_its_training(tmp_path, monkeypatch):
    """Run again on the dataset an interrupted demo left (same settings, prepared), the demo keeps it and
    trains with --resume auto; on other settings it makes a new dataset and replaces the earlier run."""
    root = str(tmp_path / 'SYSU-MM01')
    assert demo.make_dataset(root, demo.SETTINGS['quick'], seed=0) is False     # made (and prepared)
    assert demo.make_dataset(root, demo.SETTINGS['quick'], seed=0) is True      # kept
    commands, real = [], demo.run_script

    def record(script, args, on_line=None):
        commands.append([script, *args])
        if script == 'process_sysu.py':
            return real(script, args)
        if script == 'train.py':
            raise demo.Interrupted(signal.SIGINT)   # as if Ctrl-C came during training
        return 1.0

    monkeypatch.setattr(demo, 'run_script', record)
    with pytest.raises(demo.Interrupted) as stop:
        demo.main(['--workdir', str(tmp_path), '--quick', '--gpu', 'cpu'])
    train = next(c for c in commands if c[0] == 'train.py')
    assert train[train.index('--resume') + 1] == 'auto' and '--overwrite' not in train
    assert 'process_sysu.py' not in [c[0] for c in commands]                      # the kept data is prepared
    assert 'run the same command again to continue' in str(stop.value)
    # other settings (another seed): a new dataset, and the earlier run replaced
    commands.clear()
    with pytest.raises(demo.Interrupted):
        demo.main(['--workdir', str(tmp_path), '--quick', '--gpu', 'cpu', '--seed', '1'])
    assert [c[0] for c in commands][:2] == ['process_sysu.py', 'test.py'] and '--overwrite' in commands[-1]
