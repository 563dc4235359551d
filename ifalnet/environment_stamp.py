"""The environment stamp: the software and hardware that made a file, recorded in every checkpoint,
results file, features file, export and model card, and in the figures (`figure_metadata`).

Dependency drift changes results silently (a new version of a library can change the number of
iterations per epoch, or a kernel's rounding), so each file says what made it: `stamp(device,
world_size)` gives

    {"python": "3.11.7", "packages": {"torch": "2.14.1+cu130", "torchvision", "numpy", "pillow",
     "scipy"}, "cuda": CUDA version or null (CPU), "cudnn": cuDNN version or null,
     "device": {"type": "cpu", "name": CPU model, "instruction_set": "AVX512", "threads": 2}
               or {"type": "cuda", "name": GPU name, "count": visible GPUs},
     "world_size": processes, "commit": the project's git commit or null (not a git checkout),
     "modified": whether tracked files differ from that commit (null without git), "platform"}

`describe` puts it on one line (train.py and test.py print it), `major_differences` lists the
packages whose major version (and Python's feature version) differs between two stamps (test.py
notes them for a checkpoint made elsewhere). Versions come from the imported module where it is loaded (torch's build tag
included), else from the installed distribution.
"""
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

# The distributions whose versions a stamp records (the project's requirements).
PACKAGES = {'torch': 'torch', 'torchvision': 'torchvision', 'numpy': 'numpy', 'pillow': 'PIL', 'scipy': 'scipy'}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_version(distribution, module):
    """The version of the running module if it is imported, else of the installed distribution, or None."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, '__version__', None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args):
    try:
        result = subprocess.run(['git', '-C', ROOT, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def source_commit():
    """(commit, modified) of the project's checkout, or (None, None) when it is not one (an unpacked
    archive, a torch.hub download): `modified` says whether tracked files differ from the commit
    (untracked files are not counted)."""
    top = _git('rev-parse', '--show-toplevel')
    if top is None or os.path.realpath(top) != os.path.realpath(ROOT):
        return None, None   # no git, or a checkout of something else around this folder
    commit = _git('rev-parse', 'HEAD')
    status = _git('status', '--porcelain', '--untracked-files=no')
    return commit, (None if status is None else bool(status))


def cpu_model():
    """The CPU's model name as the system reports it (Linux /proc/cpuinfo), else platform's word for it."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def device_record(device=None):
    """What computes: the GPU's name, or the CPU's model, instruction set (the kernels torch uses)
    and thread count. `device` a torch.device (None: the CPU)."""
    import torch  # every script that stamps a file has imported it already
    if device is not None and torch.device(device).type == 'cuda':
        return {'type': 'cuda', 'name': torch.cuda.get_device_name(device), 'count': torch.cuda.device_count()}
    return {'type': 'cpu', 'name': cpu_model(), 'instruction_set': torch.backends.cpu.get_cpu_capability(),
            'threads': torch.get_num_threads()}


def stamp(device=None, world_size=1):
    """The environment stamp of this process (see the module), for a run on `device` with
    `world_size` processes."""
    import torch
    record = device_record(device)
    cuda = record['type'] == 'cuda'
    commit, modified = source_commit()
    return {'python': platform.python_version(),
            'packages': {name: package_version(name, module) for name, module in PACKAGES.items()},
            'cuda': torch.version.cuda if cuda else None,
            'cudnn': torch.backends.cudnn.version() if cuda else None,
            'device': record, 'world_size': int(world_size), 'commit': commit, 'modified': modified,
            'platform': platform.platform()}


# The key of the stamp in a PNG's text chunks; PDF and SVG figures hold it as their Subject and
# Description (the metadata keys those formats define).
FIGURE_KEY = 'ifalnet-environment'


def figure_metadata(kind):
    """The stamp of this process as a figure's metadata, for matplotlib's savefig(metadata=...) and
    PNG text chunks: {key: JSON text} for `kind` 'png', 'pdf' or 'svg'."""
    text = json.dumps(stamp(), sort_keys=True)
    return {{'png': FIGURE_KEY, 'pdf': 'Subject', 'svg': 'Description'}[kind]: text}


def describe(record):
    """A stamp on one line: 'Python 3.11.7, torch 2.14.1, ...; CPU AMD EPYC (AVX512), 2 threads; 1
    process; commit cc9bcaf (modified)'."""
    packages = ', '.join(f'{name} {version or "not installed"}' for name, version in record['packages'].items())
    device = record['device']
    if device['type'] == 'cuda':
        where = f'GPU {device["name"]} (CUDA {record["cuda"]}, cuDNN {record["cudnn"]})'
    else:
        where = f'CPU {device["name"] or "of unknown model"} ({device["instruction_set"]}), {device["threads"]} threads'
    processes = f'{record["world_size"]} process' + ('es' if record['world_size'] != 1 else '')
    commit = (f'commit {record["commit"][:7]}' + (' (modified)' if record['modified'] else '')
              if record['commit'] else 'not a git checkout')
    return f'Python {record["python"]}, {packages}; {where}; {processes}; {commit}'


def _major(version, parts=1):
    """The first `parts` numbers of a version ('2.14.1+cu130' -> (2,)), or None when it does not start with one."""
    head = str(version).split('+')[0].split('.')[:parts]
    return tuple(int(p) for p in head) if len(head) == parts and all(p.isdigit() for p in head) else None


def major_differences(saved, current):
    """'torch 1.13.1 (this run: 2.14.1)' for each package whose major version differs between the stamps
    `saved` and `current`, and Python's feature version (3.8 against 3.11); [] when `saved` is not a
    stamp (an older file)."""
    if not isinstance(saved, dict) or not isinstance(saved.get('packages'), dict):
        return []
    pairs = [('Python', saved.get('python'), current['python'], 2)]
    pairs += [(name, saved['packages'].get(name), version, 1) for name, version in current['packages'].items()]
    return [f'{name} {old} (this run: {new})' for name, old, new, parts in pairs
            if old and new and _major(old, parts) is not None and _major(old, parts) != _major(new, parts)]
