"""train.py under torchrun: 2 processes on the CPU with gloo, tiny images, a tiny SYSU-MM01 set.

A launch costs seconds of start-up, so one uninterrupted 2-process run serves the end-to-end,
draw and parameter checks, and the resume checks chain from one short run. The processes report
what they drew and hold through tests/helpers/torchrun_probe.py (train.py with IFALNET_DEBUG_DIR and
IFALNET_DEBUG_FAIL), which observes them from outside the product code.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import process_sysu
import train as train_script
from data_loader import IdentitySampler
from ifalnet import ddp as distributed
from ifalnet.checkpoints import read_checkpoint
from ifalnet.toy_datasets import make_sysu
from model import embed_net
from tests.helpers.torchrun_probe import parameter_digest
from tests.test_train_and_test import ROOT, TRAIN, check_results, run_test
from utils import ReIDError

NAME = 'sysu_p2_n2_lr_0.01_seed_0'
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--standalone']
DEBUG_VARS = ('IFALNET_DEBUG_DIR', 'IFALNET_DEBUG_FAIL')


@pytest.fixture(scope='module')
def sysu_tiny(tmp_path_factory):
    """4 training identities with 2 visible (cam1, cam2) and 2 infrared images each: the release
    draws 8 // 4 + 1 = 3 batches of 2 identities x 2 images an epoch, 2 processes take 2 steps."""
    train_ids = (1, 2, 3, 4)
    root = make_sysu(tmp_path_factory.mktemp('sysu_tiny'), train_ids=train_ids[:3], val_ids=train_ids[3:],
                     test_ids=(5, 6, 7), images_per_cam=1, size=(32, 16),
                     missing=[f'cam{c}/{i:04d}' for c in (4, 5) for i in train_ids])
    process_sysu.prepare_sysu(root, 32, 16)
    return root


def train_args(out, data_path, *extra):
    return ['--dataset', 'sysu', '--data-path', data_path, '--model_path', str(out / 'models'),
            '--log_path', str(out / 'log'), '--vis_log_path', str(out / 'vis'), *TRAIN, *extra]


def torchrun(out, data_path, *extra, **env):
    """train.py on 2 processes; `env` sets the probe's environment variables, and then the processes
    run train.py through tests/helpers/torchrun_probe.py."""
    environ = {k: v for k, v in os.environ.items() if k not in DEBUG_VARS}
    script = os.path.join('tests', 'helpers', 'torchrun_probe.py') if env else 'train.py'
    return subprocess.run([*TORCHRUN, script, *train_args(out, data_path, *extra)], cwd=ROOT,
                          env={**environ, **env}, capture_output=True, text=True, timeout=300)


def succeeded(run):
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def records(debug_dir, kind, rank):
    with open(os.path.join(debug_dir, f'{kind}_rank{rank}.jsonl')) as f:
        return [json.loads(line) for line in f]


def net_of(path):
    net = embed_net(4)
    net.load_state_dict(read_checkpoint(path)['net'])
    return net


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory, sysu_tiny):
    """An uninterrupted 2-process run of 2 epochs (2 steps each), recording labels and parameters."""
    out = tmp_path_factory.mktemp('ddp_full')
    debug = out / 'debug'
    debug.mkdir()
    run = succeeded(torchrun(out, sysu_tiny, '--epochs', '2', IFALNET_DEBUG_DIR=str(debug)))
    return out, debug, run


def test_two_processes_train_write_one_log_and_checkpoints_that_test_py_evaluates(two_process_run, sysu_tiny,
                                                                                    tmp_path):
    out, _, run = two_process_run
    # rank 0 alone prints: each line once
    assert run.stdout.count('arguments: ') == 1 and run.stdout.count('epoch 1 done in') == 1
    assert ('2 processes, each 2 identities x 2 images per modality: a global batch of 4 identities, '
            '2 steps per epoch (--lr 0.01 is used as given, not scaled)') in run.stdout
    assert 'Epoch: [0][2/2]' in run.stdout and 'Epoch: [1][2/2]' in run.stdout
    assert 'Validation after epoch 1' in run.stdout and 'Traceback' not in run.stderr
    logs = os.listdir(out / 'log' / 'sysu_log')
    assert logs == [f'{NAME}_os.txt']
    log = (out / 'log' / 'sysu_log' / logs[0]).read_text()
    assert log.count('arguments: ') == 1 and log.count('Validation after epoch 1') == 1
    assert sorted(os.listdir(out / 'models')) == sorted(f'{NAME}_{s}.t' for s in ('best', 'last'))

    ckpt = read_checkpoint(out / 'models' / f'{NAME}_last.t')
    assert ckpt['epoch'] == 1 and ckpt['world_size'] == 2
    assert set(ckpt['net']) == set(embed_net(4).state_dict())   # no 'module.' prefix
    # every process's random states, rank 0's also under the one-process key; dropout streams differ
    assert len(ckpt['rng_ranks']) == 2 and torch.equal(ckpt['rng']['torch'], ckpt['rng_ranks'][0]['torch'])
    assert not torch.equal(ckpt['rng_ranks'][0]['torch'], ckpt['rng_ranks'][1]['torch'])
    report = run_test(tmp_path, 'sysu', sysu_tiny, out / 'models' / f'{NAME}_best.t', '--trials', '0,1')
    check_results(report, 'sysu', [0, 1])


def test_processes_take_disjoint_blocks_of_the_shared_draw(two_process_run, sysu_tiny):
    _, debug, _ = two_process_run
    color = np.load(os.path.join(sysu_tiny, 'train_rgb_resized_label.npy'))
    thermal = np.load(os.path.join(sysu_tiny, 'train_ir_resized_label.npy'))
    drawn = [records(debug, 'labels', rank) for rank in (0, 1)]
    assert [(r['epoch'], r['step']) for r in drawn[0]] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [(r['epoch'], r['step']) for r in drawn[1]] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    for epoch in (0, 1):
        # the global sequence every process draws: 2 processes x 2 identities a step
        shared = IdentitySampler(color, thermal, num_pos=2, batch_size=2, world_size=2,
                                 rng=np.random.RandomState(0 + epoch))
        for step in (1, 2):
            block = color[shared.index1[(step - 1) * 8:step * 8]].tolist()
            mine = [next(r for r in d if (r['epoch'], r['step']) == (epoch, step)) for d in drawn]
            assert mine[0]['visible'] + mine[1]['visible'] == block
            assert set(mine[0]['visible']).isdisjoint(mine[1]['visible'])
            assert all(m['thermal'] == m['visible'] for m in mine)


def test_every_process_ends_with_the_saved_parameters(two_process_run):
    out, debug, _ = two_process_run
    digests = [records(debug, 'state', rank) for rank in (0, 1)]
    assert digests[0] == digests[1] and digests[0][0]['epoch'] == 1
    assert digests[0][0]['parameters'] == parameter_digest(net_of(out / 'models' / f'{NAME}_last.t'))


def test_resume_under_torchrun_is_exact_and_crosses_world_sizes(two_process_run, sysu_tiny, tmp_path, capsys):
    full, _, _ = two_process_run
    succeeded(torchrun(tmp_path / 'part', sysu_tiny, '--epochs', '1'))
    first = tmp_path / 'part' / 'models' / f'{NAME}_last.t'
    # Same world size: optimizer, best score and every process's random states come back, so the
    # resumed run ends with the weights of the uninterrupted one.
    resumed = succeeded(torchrun(tmp_path / 'resumed', sysu_tiny, '--epochs', '2', '--resume', str(first)))
    assert 'resuming at epoch 1 of 2' in resumed.stdout and 'process(es)' not in resumed.stdout
    a = read_checkpoint(full / 'models' / f'{NAME}_last.t')
    b = read_checkpoint(tmp_path / 'resumed' / 'models' / f'{NAME}_last.t')
    assert a['epoch'] == b['epoch'] == 1 and a['best'] == b['best']
    for key, value in a['net'].items():
        assert torch.equal(value, b['net'][key]), key

    # The 2-process checkpoint resumed by one process, and that one's resumed by 2 processes.
    capsys.readouterr()
    train_script.main(train_args(tmp_path / 'single', sysu_tiny, '--epochs', '2', '--resume', str(first)))
    out = capsys.readouterr().out
    assert 'was written by 2 process(es) and this run has 1: the identity draws follow' in out
    assert 'resuming at epoch 1 of 2' in out and 'Epoch: [1][3/3]' in out   # one process: the release's 3 batches
    single = tmp_path / 'single' / 'models' / f'{NAME}_last.t'
    ckpt = read_checkpoint(single)
    assert ckpt['epoch'] == 1 and ckpt['world_size'] == 1 and 'rng_ranks' not in ckpt
    again = succeeded(torchrun(tmp_path / 'again', sysu_tiny, '--epochs', '3', '--resume', str(single)))
    assert 'was written by 1 process(es) and this run has 2' in again.stdout
    assert 'resuming at epoch 2 of 3' in again.stdout and 'Epoch: [2][2/2]' in again.stdout
    assert read_checkpoint(tmp_path / 'again' / 'models' / f'{NAME}_last.t')['epoch'] == 2


def test_a_failure_in_one_process_ends_the_job(sysu_tiny, tmp_path):
    """Process 1 stops with an error at its second step while process 0 waits for its gradients:
    process 1 exits with the status of a ReIDError and no traceback; process 0 ends too (gloo sees
    the closed connection, or torchrun stops it), so nothing is left waiting and nothing is saved."""
    run = torchrun(tmp_path, sysu_tiny, '--epochs', '1', IFALNET_DEBUG_FAIL='1:2')
    assert run.returncode != 0
    assert run.stderr.count('error: IFALNET_DEBUG_FAIL: process 1 stops at step 2') == 1
    assert '[rank1]: Traceback' not in run.stderr
    # torchrun's report lists both processes: process 1 with status 2, process 0 ended
    assert re.search(r'rank +: 1 \(local_rank: 1\)\n +exitcode +: 2 ', run.stderr), run.stderr[-3000:]
    assert re.search(r'rank +: 0 \(local_rank: 0\)\n +exitcode +: ', run.stderr), run.stderr[-3000:]
    assert 'Epoch: [0][1/2]' in run.stdout and 'Epoch: [0][2/2]' not in run.stdout
    assert not (tmp_path / 'models').exists()   # nothing saved (and the folder it would have made is gone)


@pytest.fixture
def under_torchrun(monkeypatch):
    """This process seen as rank 0 of 2 started by torchrun, on a machine without CUDA."""
    for key, value in (('RANK', '0'), ('LOCAL_RANK', '0'), ('WORLD_SIZE', '2')):
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    return monkeypatch


def test_gpu_flag_backend_and_sync_bn_errors_under_torchrun(under_torchrun, tmp_path, sysu_tiny):
    assert distributed.launched() and distributed.world_size() == 2 and distributed.is_main()
    with pytest.raises(ReIDError, match=r'--gpu 1 cannot be used with torchrun: each process uses the GPU of '
                                        r'its LOCAL_RANK.*CUDA_VISIBLE_DEVICES=1 torchrun'):
        distributed.setup('1')
    with pytest.raises(ReIDError, match='--gpu 0,1 cannot be used with torchrun'):
        train_script.main(train_args(tmp_path, sysu_tiny, '--gpu', '0,1'))
    with pytest.raises(ReIDError, match='--dist-backend nccl needs CUDA devices and none is visible'):
        distributed.setup('', backend='nccl')
    with pytest.raises(ReIDError, match="--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU"):
        distributed.setup('0', sync_bn=True)
    under_torchrun.setattr(torch.distributed, 'is_gloo_available', lambda: False)
    with pytest.raises(ReIDError, match='the gloo backend of torch.distributed is not available in this '
                                        'PyTorch build; install a PyTorch build that has it'):
        distributed.setup('')
    # more processes on a node than GPUs
    under_torchrun.setenv('LOCAL_RANK', '1')
    under_torchrun.setattr(torch.cuda, 'is_available', lambda: True)
    under_torchrun.setattr(torch.cuda, 'device_count', lambda: 1)
    under_torchrun.setattr(torch.backends.cudnn, 'benchmark', torch.backends.cudnn.benchmark)
    with pytest.raises(ReIDError, match=r'process 1 of this node has no GPU: 1 visible; start at most that many'):
        distributed.setup('0')   # the default --gpu: the GPUs CUDA_VISIBLE_DEVICES shows ('' or 'cpu': the CPU)
    assert not torch.distributed.is_initialized()   # every check comes before joining the group


def test_a_world_size_the_data_cannot_fill_is_a_clear_error(under_torchrun, tmp_path, sysu_tiny):
    """Every process reaches the same error (no process is left waiting): 2 processes x 3 identities
    a step but 4 training identities. Seen from rank 0, without starting the other process."""
    under_torchrun.setattr(distributed, 'setup', lambda *args: torch.device('cpu'))
    with pytest.raises(ReIDError, match='batch_size 3 x 2 processes is more than the 4 training identities'):
        train_script.main(train_args(tmp_path, sysu_tiny, '--batch-size', '3'))
    assert not (tmp_path / 'models').exists()


def test_one_process_goes_through_the_same_calls(monkeypatch, capsys):
    for key in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'):
        monkeypatch.delenv(key, raising=False)
    assert not distributed.launched()
    assert (distributed.world_size(), distributed.rank(), distributed.local_rank()) == (1, 0, 0)
    assert distributed.is_main() and distributed.barrier() is None
    assert distributed.all_gather({'a': 1}) == [{'a': 1}]
    with distributed.local_main_first():
        pass
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    assert distributed.wrap_model(net, torch.device('cpu')) is net
    assert distributed.wrap_model(net, torch.device('cpu'), sync_bn=True) is net
    assert isinstance(net[1], nn.BatchNorm2d)
    assert 'note: --sync-bn has no effect in a single process' in capsys.readouterr().out


def test_sync_batchnorm_keeps_parameters_keys_and_the_frozen_bias():
    torch.manual_seed(0)
    net = embed_net(4)
    batchnorms = [n for n, m in net.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert {'bn1', 'bn2', 'MFA.conv_o.1', 'bottleneck', 'visible_module.visible.bn1'} <= set(batchnorms)
    params, keys = dict(net.named_parameters()), list(net.state_dict())
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        before = net.eval()(x, x, x, x, 1)
    assert distributed.sync_batchnorm(net) is net
    assert [n for n, m in net.named_modules() if isinstance(m, nn.SyncBatchNorm)] == batchnorms
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net.modules())
    # the optimizer's parameters, the checkpoint keys and the frozen neck bias are unchanged
    assert all(p is params[n] for n, p in net.named_parameters())
    assert list(net.state_dict()) == keys and not net.bottleneck.bias.requires_grad
    with torch.no_grad():   # in eval mode (rank 0's validation) SyncBatchNorm is BatchNorm, on the CPU too
        after = net.eval()(x, x, x, x, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
