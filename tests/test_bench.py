"""bench.py: what it runs by default on a CPU without native bfloat16, and its table."""
import json
import re
import signal

import pytest
import torch

import bench
from ifalnet.environment_stamp import stamp
from ifalnet.interruption import Interrupted


def test_bench_skips_the_emulated_bfloat16_variant(tmp_path, monkeypatch, capsys):
    # A CPU without native bfloat16 (AVX2 only): the bfloat16 variant would be emulated, many times
    # slower, and --amp does not use it there, so it is listed as skipped instead of measured.
    monkeypatch.setattr(bench, 'cpu_has_native_bf16', lambda: False)
    out_file = tmp_path / 'bench.json'
    tiny = ['--parts', 'train', '--steps', '2', '--repeats', '1', '--img_h', '32', '--img_w', '16',
            '--workers', '0', '--gpu', '', '--json', str(out_file)]
    report = bench.main(tiny)
    out = capsys.readouterr().out
    assert set(report['train']) == {'fp32 contiguous', 'fp32 channels_last'}
    assert report['skipped_variants'] == ['CPU bfloat16 channels_last (emulated)']
    written = json.loads(out_file.read_text())
    assert written['skipped_variants'] == report['skipped_variants']
    # the environment stamp, as in every file the scripts write: this process's versions and CPU
    assert written['environment'] == json.loads(json.dumps(stamp(torch.device('cpu'))))
    assert written['environment']['packages']['torch'] == torch.__version__
    assert ('skipped: CPU bfloat16 channels_last (emulated) (this CPU has no native bfloat16: emulated, many times '
            'slower, and --amp does not use it here; --all-variants runs it)') in out
    # a progress line per variant, and the table's columns fit the names
    assert '  training: fp32 contiguous (round 1 of 1) ...' in out
    assert '  training: fp32 channels_last (round 1 of 1) ...' in out
    rows = [line for line in out.splitlines() if line.startswith('  fp32 ')]
    header = next(line for line in out.splitlines() if 'data wait s' in line)
    assert len(rows) == 2 and {len(line) for line in rows} == {len(header)}        # aligned cells
    assert all(line[len('  fp32 channels_last')] == ' ' for line in rows)            # the name fits
    assert report['train']['fp32 contiguous']['ratio'] == 1.0


def test_bench_variants_with_all_variants(monkeypatch):
    cpu = torch.device('cpu')
    monkeypatch.setattr(bench, 'cpu_has_native_bf16', lambda: False)
    chosen, skipped = bench.variants(cpu, all_variants=True)
    assert [name for name, _, _ in chosen][-1] == 'CPU bfloat16 channels_last (emulated)' and skipped == []
    assert chosen[-1][2] == torch.bfloat16
    monkeypatch.setattr(bench, 'cpu_has_native_bf16', lambda: True)
    chosen, skipped = bench.variants(cpu)
    assert [name for name, _, _ in chosen] == ['fp32 contiguous', 'fp32 channels_last',
                                               'CPU bfloat16 channels_last (--amp)'] and skipped == []


def test_bench_prints_each_figure_as_it_comes_and_a_partial_table_when_interrupted(monkeypatch, capsys):
    """On a slow machine a part can take many minutes: each measurement prints its figure at once, and
    Ctrl-C (or SIGTERM) prints the table of what was measured before the signal ends the script."""
    monkeypatch.setattr(bench, 'cpu_has_native_bf16', lambda: False)
    real, calls = bench.train_epoch, []

    def interrupted_in_the_second_variant(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:   # variant 2's warm-up epoch (variant 1: a warm-up and a measured epoch)
            raise Interrupted(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, 'train_epoch', interrupted_in_the_second_variant)
    with pytest.raises(Interrupted):
        bench.main(['--parts', 'train', '--steps', '2', '--repeats', '1', '--img_h', '32', '--img_w', '16',
                    '--workers', '0', '--gpu', ''])
    out = capsys.readouterr().out
    assert re.search(r'^  training: fp32 contiguous \(round 1 of 1\) \.\.\. \d+\.\d{3} s a step$', out, re.M)
    title = next(line for line in out.splitlines() if line.startswith('Training step'))
    assert title.endswith('interrupted: the 1 variant(s) measured so far')
    assert re.search(r'^  fp32 contiguous +\d', out, re.M) and not re.search(r'^  fp32 channels_last +\d', out, re.M)
