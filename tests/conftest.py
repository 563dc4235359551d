"""Session-wide synthetic datasets in the real on-disk layouts (ifalnet/toy_datasets.py), and the
threads of parallel test workers.

Every root's name contains "cam", so all tests also check that only the path below the root is
parsed for cameras and identities.
"""
import contextlib
import os
import subprocess
import sys
import time

# Under pytest-xdist (`pytest -n N`) each worker gets its share of the CPUs as torch threads, and so
# do the scripts the tests start (they inherit the variable): N workers of the default thread count
# each would ask for N times the cores. Set before torch is first imported.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    share = max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))
    os.environ.setdefault('OMP_NUM_THREADS', str(share))

# oneDNN's AMX bfloat16 kernels (torch 2.14.1) returned NaN for MIA2's conv_narrow at the tests'
# 32x16 size on a CPU with AMX (Intel Xeon, several threads, after a float32 forward; 64x32 and
# larger were fine). Capping oneDNN at AVX512-BF16 keeps the bfloat16 tests computing in bfloat16;
# it must be set before oneDNN's first use, and the scripts the tests start inherit it.
os.environ.setdefault('ONEDNN_MAX_CPU_ISA', 'AVX512_CORE_BF16')

import pytest

from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SYSU_PARAMS = dict(train_ids=(1, 2, 3, 5, 8), val_ids=(9,), test_ids=(10, 11, 12, 14), images_per_cam=3,
                   size=(48, 24), missing=('cam2/0011', 'cam6/0012', 'cam5/0003', 'cam1/0014'))
REGDB_PARAMS = dict(num_ids=10, images_per_id=3, size=(48, 24))
LLCM_PARAMS = dict(train_ids=(1, 2, 3, 4, 5), test_ids=(6, 7, 8), images_per_cam=2, size=(48, 24),
                   missing=('test_vis/cam3/0007', 'test_nir/cam2/0006', 'train_nir/cam9/0002'))


@pytest.fixture(scope='session')
def sysu_root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp('camera_sysu'), **SYSU_PARAMS)


@pytest.fixture(scope='session')
def regdb_root(tmp_path_factory):
    return make_regdb(tmp_path_factory.mktemp('camera_regdb'), **REGDB_PARAMS)


@pytest.fixture(scope='session')
def llcm_root(tmp_path_factory):
    return make_llcm(tmp_path_factory.mktemp('camera_llcm'), **LLCM_PARAMS)


@pytest.fixture(scope='session')
def untrained_checkpoint(tmp_path_factory):
    """An untrained network of 5 classes (seed 0) saved as a checkpoint without training arguments: its path."""
    import torch

    from ifalnet.checkpoints import save_checkpoint
    from model import embed_net
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('untrained') / 'untrained.t'
    save_checkpoint({'net': embed_net(5).state_dict(), 'epoch': -1}, path)
    return str(path)


@pytest.fixture(scope='session')
def sysu_prepared(tmp_path_factory):
    """A SYSU-MM01 copy of its own, prepared by process_sysu.py (the shared sysu_root stays unprepared):
    (root, what the script printed)."""
    sysu_root = make_sysu(tmp_path_factory.mktemp('camera_sysu_prepared'), **SYSU_PARAMS)
    result = subprocess.run([sys.executable, os.path.join(REPO, 'process_sysu.py'), '--data-path', sysu_root],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    return sysu_root, result.stdout


# ----------------------------------------------------------------------------- the release's files and loops
KEYS_FILE = os.path.join(os.path.dirname(__file__), 'golden', 'release_checkpoint_keys.txt')


def release_keys():
    """{key: (shape tuple, used?)} from the release's checkpoint key list."""
    keys = {}
    with open(KEYS_FILE) as f:
        for line in f:
            if line.startswith('#'):
                continue
            key, shape, use = line.rstrip('\n').split('\t')
            dims = () if shape == 'scalar' else tuple(int(d) for d in shape.split('x'))
            keys[key] = (dims, use == 'used')
    return keys


def release_folders(root, ids, cameras):
    """The release's loops, written out independently: sorted ids, cameras in order, sorted files."""
    for pid in sorted('%04d' % i for i in ids):
        for cam in cameras:
            img_dir = os.path.join(root, cam, pid)
            if os.path.isdir(img_dir):
                yield sorted(img_dir + '/' + name for name in os.listdir(img_dir))


def release_list(root, ids, cameras):
    return [path for files in release_folders(root, ids, cameras) for path in files]


# ----------------------------------------------------------------------------- slow tests
def pytest_configure(config):
    config.addinivalue_line('markers', 'slow(what): a test that takes minutes; it says so when it starts')


def pytest_runtest_setup(item):
    """Announce a slow test on the terminal (even under -q), so a long silence is explained."""
    marker = item.get_closest_marker('slow')
    plugins = item.config.pluginmanager
    reporter, capture = plugins.get_plugin('terminalreporter'), plugins.get_plugin('capturemanager')
    if marker is not None and reporter is not None:
        what = marker.args[0] if marker.args else 'a slow test'
        # Output is captured around setup; the capture manager lets this line through to the terminal.
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f'\n[{time.strftime("%H:%M:%S")}] {item.name}: {what} ...')


def failing_writes(monkeypatch, code, after=0):
    """Mock a file system that fails with `code` once `after` bytes are written (where no tmpfs can be mounted)."""
    real = os.fdopen

    class Failing:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > after:
                raise OSError(code, os.strerror(code))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, 'fdopen', lambda fd, mode: Failing(real(fd, mode)))
