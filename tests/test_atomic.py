"""ifalnet/atomic.py: files written atomically get the mode any new file gets."""
import contextlib
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import process_sysu
from ifalnet.atomic import atomic_write
from ifalnet.checkpoints import save_checkpoint


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
