"""process_sysu.py: the release's arrays of SYSU-MM01's training images, and its errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ifalnet.toy_datasets import make_sysu
from tests.conftest import SYSU_PARAMS, release_list
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSU_ALL, SYSU_INDOOR, SYSU_IR = ('cam1', 'cam2', 'cam4', 'cam5'), ('cam1', 'cam2'), ('cam3', 'cam6')


def source_resized(path, img_h, img_w):
    return np.asarray(Image.open(path).convert('RGB').resize((img_w, img_h), Image.Resampling.LANCZOS))


# ----------------------------------------------------------------------------------- process_sysu.py

def test_process_sysu_arrays(sysu_prepared):
    root, stdout = sysu_prepared
    train = sorted(SYSU_PARAMS['train_ids'] + SYSU_PARAMS['val_ids'])
    rgb_files = release_list(root, train, SYSU_ALL)
    ir_files = release_list(root, train, SYSU_IR)
    assert len(rgb_files) == 6 * 4 * 3 - 3 and len(ir_files) == 6 * 2 * 3
    assert '6 identities, 69 visible images, 36 infrared images' in stdout
    for modality, files in (('rgb', rgb_files), ('ir', ir_files)):
        images = np.load(os.path.join(root, f'train_{modality}_resized_img.npy'))
        labels = np.load(os.path.join(root, f'train_{modality}_resized_label.npy'))
        assert images.dtype == np.uint8 and images.shape == (len(files), 384, 192, 3)
        assert labels.dtype == np.int64
        assert labels.tolist() == [train.index(int(path.split('/')[-2])) for path in files]
        for i, path in enumerate(files):
            np.testing.assert_array_equal(images[i], source_resized(path, 384, 192))
    assert not [name for name in os.listdir(root) if name.endswith('.tmp')]


def test_process_sysu_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, 'process_sysu.py'), '--data-path',
                             str(tmp_path / 'nowhere')], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert str(tmp_path / 'nowhere') in result.stderr and 'SYSU-MM01 layout' in result.stderr


def test_process_sysu_refuses_identity_in_one_modality(tmp_path):
    root = make_sysu(tmp_path / 'sysu', train_ids=(1, 2), val_ids=(3,), test_ids=(4,), images_per_cam=1,
                     size=(16, 8), missing=('cam3/0002', 'cam6/0002'))
    from process_sysu import prepare_sysu
    with pytest.raises(ReIDError, match=r'identities \[2\] .* one modality only'):
        prepare_sysu(root, img_h=16, img_w=8)
    assert not [name for name in os.listdir(root) if name.endswith('.npy')]
