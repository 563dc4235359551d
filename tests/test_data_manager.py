"""data_manager.py: test lists and gallery draws of the three datasets, and the errors for bad
layouts, files and images, on synthetic datasets in the real layouts."""
import os
import random
import re
import shutil

import numpy as np
import pytest

import data_loader as dl
import data_manager as dm
from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu
from tests.conftest import LLCM_PARAMS, SYSU_PARAMS, release_folders, release_list
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSU_TEST = SYSU_PARAMS['test_ids']
SYSU_ALL, SYSU_INDOOR, SYSU_IR = ('cam1', 'cam2', 'cam4', 'cam5'), ('cam1', 'cam2'), ('cam3', 'cam6')


def release_gallery(root, ids, cameras, trial):
    """The release's gallery draw on the global generator (its state restored afterwards)."""
    saved = random.getstate()
    try:
        random.seed(trial)
        return [random.choice(files) for files in release_folders(root, ids, cameras)]
    finally:
        random.setstate(saved)


# ----------------------------------------------------------------------------------- SYSU lists


def test_roots_contain_cam(sysu_root, regdb_root, llcm_root):
    # The fixtures' roots contain "cam" on purpose: every parse below must ignore it.
    assert all('cam' in root for root in (sysu_root, regdb_root, llcm_root))


@pytest.mark.parametrize('mode', ['all', 'indoor'])
def test_sysu_query_lists_every_infrared_image(sysu_root, mode):
    paths, ids, cams = dm.process_query_sysu(sysu_root, mode=mode)
    # 4 test ids x 2 infrared cameras x 3 images, minus the folder cam6/0012 left out.
    assert len(paths) == 4 * 2 * 3 - 3
    assert paths == release_list(sysu_root, SYSU_TEST, SYSU_IR)
    assert ids.dtype == np.int64 and cams.dtype == np.int64
    assert [(int(c), int(i)) for c, i in zip(cams, ids)] == \
        [(int(p.split(os.sep)[-3][3:]), int(p.split(os.sep)[-2])) for p in paths]
    assert set(ids.tolist()) == set(SYSU_TEST) and set(cams.tolist()) == {3, 6}
    assert (12, 6) not in set(zip(ids.tolist(), cams.tolist()))


@pytest.mark.parametrize('mode, cameras', [('all', SYSU_ALL), ('indoor', SYSU_INDOOR)])
def test_sysu_gallery_matches_release_draw(sysu_root, mode, cameras):
    for trial in range(3):
        paths, ids, cams = dm.process_gallery_sysu(sysu_root, mode=mode, trial=trial)
        assert paths == release_gallery(sysu_root, SYSU_TEST, cameras, trial)
        # One image per existing (id, camera) folder; cam2/0011 and cam1/0014 are missing.
        pairs = list(zip(ids.tolist(), cams.tolist()))
        expected = [(pid, int(cam[3:])) for pid in SYSU_TEST for cam in cameras
                    if f'{cam}/{pid:04d}' not in SYSU_PARAMS['missing']]
        assert pairs == expected


def test_sysu_gallery_trials_differ_repeat_and_leave_global_random_alone(sysu_root):
    random.seed(1234)
    state = random.getstate()
    first = dm.process_gallery_sysu(sysu_root, trial=0)[0]
    assert random.getstate() == state
    assert dm.process_gallery_sysu(sysu_root, trial=0)[0] == first
    assert dm.process_gallery_sysu(sysu_root, trial=1)[0] != first
    assert random.getstate() == state


def test_sysu_trailing_slash_gives_same_lists(sysu_root):
    for fn in (dm.process_query_sysu, dm.process_gallery_sysu):
        plain = fn(sysu_root)
        for variant in (sysu_root + '/', sysu_root + '//'):
            slashed = fn(variant)
            assert plain[0] == slashed[0]
            np.testing.assert_array_equal(plain[1], slashed[1])
            np.testing.assert_array_equal(plain[2], slashed[2])
    assert dm.process_query_sysu(sysu_root)[0][0].startswith(sysu_root + os.sep + 'cam3' + os.sep)


def test_sysu_unknown_mode(sysu_root):
    with pytest.raises(ReIDError, match="unknown SYSU-MM01 mode 'outdoor'"):
        dm.process_gallery_sysu(sysu_root, mode='outdoor')


# ----------------------------------------------------------------------------------- LLCM lists

LLCM_TEST = LLCM_PARAMS['test_ids']


@pytest.mark.parametrize('mode', [1, 2])
def test_llcm_query_and_gallery(llcm_root, mode):
    cameras = dm.LLCM_CAMERAS[mode]
    expected_cams = set(range(1, 10)) if mode == 1 else {1, 2, 4, 5, 6, 7, 8, 9}
    paths, ids, cams = dm.process_query_llcm(llcm_root, mode=mode)
    assert paths == release_list(llcm_root, LLCM_TEST, cameras)
    assert len(paths) == (3 * len(expected_cams) - 1) * 2     # one folder per mode left out
    assert set(cams.tolist()) == expected_cams and set(ids.tolist()) == set(LLCM_TEST)
    missing = (7, 3) if mode == 1 else (6, 2)
    assert missing not in set(zip(ids.tolist(), cams.tolist()))
    for trial in range(3):
        gallery, g_ids, g_cams = dm.process_gallery_llcm(llcm_root, mode=mode, trial=trial)
        assert gallery == release_gallery(llcm_root, LLCM_TEST, cameras, trial)
        assert len(gallery) == 3 * len(expected_cams) - 1
        assert [int(p.split(os.sep)[-2]) for p in gallery] == g_ids.tolist()


def test_llcm_gallery_trials_and_trailing_slash(llcm_root):
    state = random.getstate()
    first = dm.process_gallery_llcm(llcm_root, mode=2, trial=0)[0]
    assert dm.process_gallery_llcm(llcm_root + '/', mode=2, trial=0)[0] == first
    assert dm.process_gallery_llcm(llcm_root, mode=2, trial=5)[0] != first
    assert dm.process_query_llcm(llcm_root + '/')[0] == dm.process_query_llcm(llcm_root)[0]
    assert random.getstate() == state


# ----------------------------------------------------------------------------------- RegDB lists

def test_regdb_test_lists(regdb_root):
    for trial in (1, 2):
        vis, vis_labels = dm.process_test_regdb(regdb_root, trial=trial, modal='visible')
        th, th_labels = dm.process_test_regdb(regdb_root + '/', trial=trial, modal='thermal')
        np.testing.assert_array_equal(vis_labels, th_labels)
        lines = open(os.path.join(regdb_root, 'idx', f'test_visible_{trial}.txt')).read().splitlines()
        assert vis == [os.path.join(regdb_root, line.split(' ')[0]) for line in lines]
        assert vis_labels.tolist() == [int(line.split(' ')[1]) for line in lines]
        assert all(p.startswith(os.path.join(regdb_root, 'Thermal') + os.sep) for p in th)
        assert len(vis) == 5 * 3
    assert dm.process_test_regdb(regdb_root, 1)[1].tolist() != dm.process_test_regdb(regdb_root, 2)[1].tolist()


# ----------------------------------------------------------------------------------- errors

def test_missing_root_names_path_and_layout(tmp_path):
    missing = str(tmp_path / 'absent')
    for fn, layout in ((dm.process_query_sysu, 'SYSU-MM01 layout'), (dm.process_gallery_llcm, 'LLCM layout'),
                       (dm.process_test_regdb, 'RegDB layout'), (dl.SYSUData, 'SYSU-MM01 layout'),
                       (lambda p: dl.RegDBData(p, 1), 'RegDB layout'), (dl.LLCMData, 'LLCM layout')):
        with pytest.raises(ReIDError) as err:
            fn(missing)
        assert missing in str(err.value) and layout in str(err.value)


def test_missing_index_and_id_files(tmp_path):
    with pytest.raises(ReIDError, match='missing file .*exp.test_id.txt; expected the SYSU-MM01 layout'):
        dm.process_query_sysu(tmp_path)
    with pytest.raises(ReIDError, match='missing file .*idx.test_thermal_3.txt; expected the RegDB layout'):
        dm.process_test_regdb(tmp_path, trial=3, modal='thermal')
    with pytest.raises(ReIDError, match='missing file .*idx.train_vis.txt; expected the LLCM layout'):
        dl.LLCMData(tmp_path)
    with pytest.raises(ReIDError, match='missing file .*exp.train_id.txt'):
        dm.sysu_train_files(tmp_path)


@pytest.mark.parametrize('content', ['', '\n', ' , \n'])
def test_empty_id_list(tmp_path, content):
    (tmp_path / 'exp').mkdir()
    (tmp_path / 'exp' / 'test_id.txt').write_text(content)
    with pytest.raises(ReIDError, match=r'id file .*exp.test_id.txt lists no identities'):
        dm.process_gallery_sysu(tmp_path)


def test_bad_id_and_index_lines(tmp_path):
    (tmp_path / 'idx').mkdir()
    (tmp_path / 'idx' / 'test_id.txt').write_text('1,2,x\n')
    with pytest.raises(ReIDError, match=r'id file .*test_id.txt is not a comma-separated line of integers'):
        dm.process_query_llcm(tmp_path)
    (tmp_path / 'idx' / 'test_visible_1.txt').write_text('Visible/1/a.bmp 0\nVisible/1/b.bmp\n')
    with pytest.raises(ReIDError, match=r'test_visible_1.txt, line 2: expected "relative/path label"'):
        dm.process_test_regdb(tmp_path)


def test_no_images_for_test_ids(tmp_path):
    (tmp_path / 'exp').mkdir()
    (tmp_path / 'exp' / 'test_id.txt').write_text('1,2\n')
    with pytest.raises(ReIDError, match=f'no images found for the SYSU-MM01 query .* under {re.escape(str(tmp_path))}'):
        dm.process_query_sysu(tmp_path)


def test_corrupt_image_named(tmp_path):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(ReIDError, match=f'cannot read image {re.escape(str(bad))}'):
        dl.TestData([str(bad)], [0], 16, 8)[0]
    root = make_regdb(tmp_path / 'regdb', num_ids=4, images_per_id=1, size=(16, 8), trials=1)
    victim = open(os.path.join(root, 'idx', 'train_thermal_1.txt')).readline().split()[0]
    with open(os.path.join(root, victim), 'r+b') as f:
        f.truncate(40)
    with pytest.raises(ReIDError, match=f'cannot read image {re.escape(os.path.join(root, victim))}'):
        dl.RegDBData(root, 1, 16, 8)
    with pytest.raises(ReIDError, match=f'1 test images are missing, first {re.escape(str(tmp_path / "nothing.jpg"))}'):
        dl.TestData([str(tmp_path / 'nothing.jpg')], [0], 16, 8)


def test_listed_image_missing(tmp_path):
    root = make_regdb(tmp_path / 'regdb', num_ids=4, images_per_id=1, size=(16, 8), trials=1)
    victim = open(os.path.join(root, 'idx', 'train_visible_1.txt')).readline().split()[0]
    os.remove(os.path.join(root, victim))
    missing = re.escape(os.path.join(root, victim))
    with pytest.raises(ReIDError, match=f'train_visible_1.txt lists {missing}, which does not exist'):
        dl.RegDBData(root, 1, 16, 8)


@pytest.mark.parametrize('path, root', [('/data/camera/x/0001/a.jpg', '/data/camera'),
                                        ('/data/camera/cam3/abc/a.jpg', '/data/camera'),
                                        ('/data/camera/a.jpg', '/data/camera'),
                                        ('/other/cam3/0001/a.jpg', '/data/camera')])
def test_unparseable_path_named(path, root):
    with pytest.raises(ReIDError, match=f'cannot parse camera and identity from {re.escape(path)}'):
        dm.parse_camera_and_id(path, root)


def test_parse_reads_only_below_root():
    assert dm.parse_camera_and_id('/d/cam9/cam_x/test_nir/cam4/0123/0123_c04_01_nir.jpg',
                                  '/d/cam9/cam_x/') == (4, 123)
    assert dm.parse_camera_and_id('/d/cam2/cam6/0042/0001.jpg', '/d/cam2') == (6, 42)


def test_training_labels_must_be_consecutive(tmp_path):
    root = make_regdb(tmp_path / 'regdb', num_ids=4, images_per_id=1, size=(16, 8), trials=1)
    index = os.path.join(root, 'idx', 'train_visible_1.txt')
    lines = open(index).read().splitlines()
    with open(index, 'w') as f:
        f.writelines(f'{line.split()[0]} {int(line.split()[1]) + 1}\n' for line in lines)
    with pytest.raises(ReIDError, match=f'training labels in {re.escape(index)} are not 0..K-1'):
        dl.RegDBData(root, 1, 16, 8)
    llcm = make_llcm(tmp_path / 'llcm', train_ids=(1, 2), test_ids=(3,), images_per_cam=1, size=(16, 8))
    index = os.path.join(llcm, 'idx', 'train_nir.txt')
    text = open(index).read()
    with open(index, 'w') as f:
        f.write(text.replace(' 1\n', ' 5\n'))
    with pytest.raises(ReIDError, match=f'training labels in {re.escape(index)} are not 0..K-1'):
        dl.LLCMData(llcm, 16, 8)


def test_missing_sysu_arrays_say_how_to_prepare(tmp_path):
    root = make_sysu(tmp_path / 'sysu', train_ids=(1, 2), val_ids=(3,), test_ids=(4,), images_per_cam=1,
                     size=(16, 8))
    with pytest.raises(ReIDError) as err:
        dl.SYSUData(root)
    message = str(err.value)
    assert os.path.join(root, 'train_rgb_resized_img.npy') in message
    assert f'python process_sysu.py --data-path {root}' in message


def test_truncated_sysu_array(tmp_path, sysu_prepared):
    root = str(tmp_path / 'sysu')
    shutil.copytree(sysu_prepared[0], root, ignore=shutil.ignore_patterns('cam*'))
    with open(os.path.join(root, 'train_ir_resized_img.npy'), 'r+b') as f:
        f.truncate(1000)
    with pytest.raises(ReIDError, match=f'cannot read {re.escape(os.path.join(root, "train_ir_resized_img.npy"))}'):
        dl.SYSUData(root)
