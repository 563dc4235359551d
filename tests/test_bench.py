"""bench.py: what it runs by default on a CPU without native bfloat16, and its table; the cost part."""
import json
import re
import signal

import pytest
import torch

import bench
from ifalnet import costs
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


def test_bench_cost_prints_the_cost_table(tmp_path, monkeypatch, capsys):
    # The cost part at 32x16 on PyTorch alone (the ONNX Runtime row is the same code with export.py's
    # file, tested in test_export.py): the figures costs.py computes, and memory that holds the weights.
    monkeypatch.setattr(bench, 'runtime_available', lambda fmt: False)
    report = bench.main(['--parts', 'cost', '--cost-size', '32x16', '--cost-batch', '3', '--repeats', '1', '--gpu', '',
                         '--json', str(tmp_path / 'bench.json')])
    out = capsys.readouterr().out
    cost = report['cost']
    assert json.loads((tmp_path / 'bench.json').read_text())['cost'] == cost
    assert (cost['img_h'], cost['img_w'], cost['classes'], cost['batches']) == (32, 16, 395, [1, 3])
    ifalnet, baseline = cost['models']['IFALNet'], cost['models']['two-stream baseline (--no-middle)']
    assert ifalnet['test_image_flops'] == costs.test_flops(395, True, 32, 16)
    assert ifalnet['training_item_flops'] > 5 * ifalnet['test_image_flops']            # four views, and backward
    assert 2 * baseline['test_image_flops'] < ifalnet['test_image_flops'] < 2.01 * baseline['test_image_flops']
    assert ifalnet['network'] == sum(p.numel() for p in costs.build(395).parameters()) > ifalnet['branch']
    assert set(cost['runtimes']) == {'IFALNet, PyTorch fp32 CPU', 'two-stream baseline (--no-middle), PyTorch fp32 CPU'}
    for row in cost['runtimes'].values():
        for b in (1, 3):
            cell = row[f'batch_{b}']
            assert cell['images_per_s'] == b / cell['seconds'] and cell['ms_per_image'] == 1000 * cell['seconds'] / b
        # a process that loads the branch holds its float32 weights (the whole network, 190 MB) at least
        assert row['batch_3']['peak_mb'] >= row['batch_1']['peak_mb'] >= 4 * ifalnet['branch'] / 2 ** 20
    assert 'Cost at 32x16: parameters (millions; 395 classes)' in out and 'Latency of the visible branch at 32x16' in out
    assert [line.split()[0] for line in out.splitlines() if 'fp32 CPU' in line and 'cost:' not in line] == \
        ['IFALNet,', 'two-stream']
    # each figure as it comes
    assert re.search(r'^  cost: IFALNet: parameters and FLOPs \.\.\. 49\.\d\dM parameters, \d+\.\d GFLOP per test image$',
                     out, re.M)
    assert re.search(r'^  cost: IFALNet, PyTorch fp32 CPU, batch 3 \(round 1 of 1\) \.\.\. \d+\.\d ms per image, '
                     r'\d+\.\d\d images/s$', out, re.M)
    assert re.search(r'^  cost: IFALNet, PyTorch fp32 CPU: peak memory \(a child process\) \.\.\. batch 1: \d+ MB, '
                     r'batch 3: \d+ MB$', out, re.M)


def test_bench_cost_interrupted_prints_what_it_has(monkeypatch, capsys):
    # Interrupted while measuring the first model's memory: its parameters, FLOPs and latencies are
    # printed, the memory columns and the second model are not.
    monkeypatch.setattr(bench, 'runtime_available', lambda fmt: False)

    def interrupted(*args):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(bench.costs, 'peak_memory', interrupted)
    with pytest.raises(Interrupted):
        bench.main(['--parts', 'cost', '--cost-size', '32x16', '--cost-batch', '2', '--repeats', '1', '--gpu', ''])
    out = capsys.readouterr().out
    titles = [line for line in out.splitlines() if line.startswith(('Cost at', 'Latency of'))]
    assert len(titles) == 2 and all(t.endswith('interrupted: what was measured so far') for t in titles)
    assert re.search(r'^  IFALNet +49\.\d\d +\d', out, re.M) and 'two-stream' not in out
    row = next(line for line in out.splitlines() if line.startswith('  IFALNet, PyTorch fp32 CPU'))
    assert row.split()[-5:-2] != ['-'] * 3 and row.split()[-2:] == ['-', '-']   # latencies, no memory


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
