"""ifalnet/environment_stamp.py: what a file records of the software and hardware that made it, the note
test.py gives for a checkpoint made under other major versions, and the lock file of exact versions
(requirements-lock.txt). That every file the scripts write carries the stamp is tested with the files:
test_sharing.py (checkpoint, results, features, model folder), test_export.py (ONNX, TorchScript)."""
import os
import platform
import re
import subprocess

import numpy as np
import PIL
import scipy
import torch
import torchvision
from packaging.requirements import Requirement
from packaging.version import Version

import test as test_script
from ifalnet import environment_stamp as env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECORD = {'python': '3.11.7', 'packages': {'torch': '2.14.1', 'torchvision': '0.29.1', 'numpy': '2.4.6',
                                           'pillow': '13.0.0', 'scipy': '1.17.1'},
          'cuda': None, 'cudnn': None, 'device': {'type': 'cpu', 'name': 'AMD EPYC', 'instruction_set': 'AVX512',
                                                  'threads': 2},
          'world_size': 1, 'commit': 'cc9bcaf5367c0da44f1409d7fcd43a65912559e8', 'modified': True, 'platform': 'Linux'}


def test_the_stamp_is_this_process():
    record = env.stamp(torch.device('cpu'), world_size=3)
    assert record['python'] == platform.python_version()
    assert record['packages'] == {'torch': torch.__version__, 'torchvision': torchvision.__version__,
                                  'numpy': np.__version__, 'pillow': PIL.__version__, 'scipy': scipy.__version__}
    assert record['cuda'] is None and record['cudnn'] is None and record['world_size'] == 3
    assert record['device'] == {'type': 'cpu', 'name': env.cpu_model(), 'threads': torch.get_num_threads(),
                                'instruction_set': torch.backends.cpu.get_cpu_capability()}
    top = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--show-toplevel'], capture_output=True, text=True)
    if top.returncode == 0 and os.path.realpath(top.stdout.strip()) == os.path.realpath(ROOT):
        head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
        assert re.fullmatch(r'[0-9a-f]{40}', record['commit']) and record['commit'] == head
        assert isinstance(record['modified'], bool)
    else:   # an unpacked archive: no commit to name
        assert record['commit'] is None and record['modified'] is None


def test_the_stamp_on_one_line():
    assert env.describe(RECORD) == ('Python 3.11.7, torch 2.14.1, torchvision 0.29.1, numpy 2.4.6, pillow 13.0.0, '
                                    'scipy 1.17.1; CPU AMD EPYC (AVX512), 2 threads; 1 process; commit cc9bcaf (modified)')
    gpu = {**RECORD, 'cuda': '13.0', 'cudnn': 92400, 'device': {'type': 'cuda', 'name': 'NVIDIA H100', 'count': 4},
           'world_size': 4, 'commit': None, 'modified': None}
    assert env.describe(gpu).endswith('; GPU NVIDIA H100 (CUDA 13.0, cuDNN 92400); 4 processes; not a git checkout')


def test_test_py_notes_a_checkpoint_of_other_major_versions(capsys):
    older = {**RECORD, 'python': '3.8.10', 'packages': {**RECORD['packages'], 'torch': '1.13.1', 'numpy': '1.26.4'}}
    assert env.major_differences(older, RECORD) == ['Python 3.8.10 (this run: 3.11.7)', 'torch 1.13.1 (this run: 2.14.1)',
                                                    'numpy 1.26.4 (this run: 2.4.6)']
    assert env.major_differences(RECORD, RECORD) == [] and env.major_differences(None, RECORD) == []
    test_script.note_other_versions('old.t', older, RECORD)
    test_script.note_other_versions('same.t', {**RECORD, 'packages': {**RECORD['packages'], 'torch': '2.1.0'}}, RECORD)
    assert capsys.readouterr().out == ('note: old.t was made with Python 3.8.10 (this run: 3.11.7), torch 1.13.1 (this '
                                       'run: 2.14.1), numpy 1.26.4 (this run: 2.4.6): other major versions, whose '
                                       'kernels and defaults can move scores in the last digits\n')


def requirements(name):
    with open(os.path.join(ROOT, name)) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('-r ')]


def test_the_lock_file_pins_every_requirement_in_pips_format():
    pins = {}
    for line in requirements('requirements-lock.txt'):
        assert re.fullmatch(r'[A-Za-z0-9][\w.-]*==[\w.+!-]+', line), line   # `pip freeze`'s format
        name, version = line.split('==')
        pins[name.lower().replace('_', '-')] = Version(version)
    files = [f for f in os.listdir(ROOT) if re.fullmatch(r'requirements(-\w+)?\.txt', f) and f != 'requirements-lock.txt']
    assert {'requirements.txt', 'requirements-vis.txt', 'requirements-export.txt', 'requirements-share.txt',
            'requirements-hub.txt'} <= set(files)
    for name in files:
        for line in requirements(name):
            wanted = Requirement(line)
            key = wanted.name.lower().replace('_', '-')
            assert key in pins, f'{name}: {wanted.name} is not in requirements-lock.txt'
            assert pins[key] in wanted.specifier, f'{name}: {line}, but the lock pins {pins[key]}'
    for tool in ('pytest', 'pytest-xdist'):   # what the README's test command installs besides
        assert tool in pins
