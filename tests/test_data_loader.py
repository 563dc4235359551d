"""Data: test lists and gallery draws, process_sysu.py arrays, training sets, sampler, augmentations,
and the error messages for bad input, on synthetic datasets in the real layouts."""
import os
import pickle
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import data_loader as dl
import data_manager as dm
from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu
from tests.conftest import LLCM_PARAMS, SYSU_PARAMS
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_folders(root, ids, cameras):
    """The release's loops, written out independently: sorted ids, cameras in order, sorted files."""
    for pid in sorted('%04d' % i for i in ids):
        for cam in cameras:
            img_dir = os.path.join(root, cam, pid)
            if os.path.isdir(img_dir):
                yield sorted(img_dir + '/' + name for name in os.listdir(img_dir))


def release_gallery(root, ids, cameras, trial):
    """The release's gallery draw on the global generator (its state restored afterwards)."""
    saved = random.getstate()
    try:
        random.seed(trial)
        return [random.choice(files) for files in release_folders(root, ids, cameras)]
    finally:
        random.setstate(saved)


def release_list(root, ids, cameras):
    return [path for files in release_folders(root, ids, cameras) for path in files]


def source_resized(path, img_h, img_w):
    return np.asarray(Image.open(path).convert('RGB').resize((img_w, img_h), Image.Resampling.LANCZOS))


# ----------------------------------------------------------------------------------- SYSU lists

SYSU_TEST = SYSU_PARAMS['test_ids']
SYSU_ALL, SYSU_INDOOR, SYSU_IR = ('cam1', 'cam2', 'cam4', 'cam5'), ('cam1', 'cam2'), ('cam3', 'cam6')


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


# ----------------------------------------------------------------------------------- process_sysu.py

@pytest.fixture(scope='module')
def sysu_prepared(tmp_path_factory):
    """A SYSU-MM01 copy of our own, prepared by the script (the shared sysu_root stays unprepared)."""
    sysu_root = make_sysu(tmp_path_factory.mktemp('camera_sysu_prepared'), **SYSU_PARAMS)
    result = subprocess.run([sys.executable, os.path.join(REPO, 'process_sysu.py'), '--data-path', sysu_root],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    return sysu_root, result.stdout


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


# ----------------------------------------------------------------------------------- training sets

def test_sysu_train_set_memory_maps_and_resizes(sysu_prepared):
    root, _ = sysu_prepared
    full = dl.build_train_set('sysu', root, 384, 192)
    assert isinstance(full.train_color_image, np.memmap) and isinstance(full.train_thermal_image, np.memmap)
    small = dl.SYSUData(root + '/', img_h=64, img_w=32)
    sampler = dl.IdentitySampler(small.train_color_label, small.train_thermal_label, num_pos=2, batch_size=3)
    small.cIndex, small.tIndex = sampler.index1, sampler.index2
    assert len(small) == len(sampler.index1)
    item = small[0]
    assert [tuple(v.shape) for v in item[:4]] == [(3, 64, 32)] * 4
    assert item[4] == small.train_color_label[sampler.index1[0]]
    assert item[5] == small.train_thermal_label[sampler.index2[0]] == item[4]
    # A worker started by spawn gets the dataset pickled: the maps are reopened, not copied.
    clone = pickle.loads(pickle.dumps(small))
    assert isinstance(clone.train_color_image, np.memmap)
    assert len(pickle.dumps(small)) < 100_000
    np.testing.assert_array_equal(clone.train_thermal_image[3], small.train_thermal_image[3])


def seed_python_and_torch(seed):
    """The generators the release's augmentations draw from."""
    random.seed(seed)
    torch.manual_seed(seed)


def sysu_one_pair(root, colour, thermal):
    """The prepared SYSU-MM01 set at 64x32 with an epoch of one (visible, thermal) index pair."""
    data = dl.SYSUData(root, img_h=64, img_w=32)
    data.cIndex, data.tIndex = np.array([colour]), np.array([thermal])
    return data


def torchvision_views(img_h, img_w):
    """The release's view pipelines, written with torchvision's PIL transforms."""
    plain = [T.Pad(10), T.RandomCrop((img_h, img_w)), T.RandomHorizontalFlip(), T.ToTensor(),
             T.Normalize(dl.IMAGENET_MEAN, dl.IMAGENET_STD), dl.ChannelRandomErasing(probability=0.5)]
    return (T.Compose(plain), T.Compose(plain + [dl.RandomChannelCopy()]),
            T.Compose(plain + [dl.ChannelAdaptiveGray(probability=0.5)]))


def test_train_item_draws_views_in_release_order(sysu_prepared):
    root, _ = sysu_prepared
    data = sysu_one_pair(root, 5, 7)
    seed_python_and_torch(3)
    item = data[0]
    seed_python_and_torch(3)
    resize = lambda a: Image.fromarray(np.asarray(a)).resize((32, 64), Image.Resampling.LANCZOS)
    plain, visible2, thermal2 = torchvision_views(64, 32)
    img_c, img_t = resize(data.train_color_image[5]), resize(data.train_thermal_image[7])
    expected = (plain(img_c), visible2(img_c), plain(img_t), thermal2(img_t))
    for got, want in zip(item[:4], expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(item[1][0], item[1][1]) and torch.equal(item[1][1], item[1][2])


@pytest.mark.parametrize('size, crop', [((40, 24), (40, 24)), ((40, 24), (32, 16)), ((30, 20), (50, 40)),
                                        ((12, 10), (30, 24))])
def test_train_views_equal_torchvision_bit_for_bit(size, crop):
    """Slicing the uint8 image draws and computes what Pad/RandomCrop/Flip/ToTensor/Normalize do,
    also when the crop is the padded size (no offset drawn) or the image is smaller than the crop."""
    img = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    ours, theirs = dl.train_transforms(*crop), torchvision_views(*crop)
    for seed in range(12):
        for view, reference in zip(ours, theirs):
            seed_python_and_torch(seed)
            got = view(img)
            after = (random.random(), torch.rand(1))
            seed_python_and_torch(seed)
            want = reference(Image.fromarray(img))
            assert torch.equal(got, want)
            assert after == (random.random(), torch.rand(1))   # the same number of draws


def test_seeded_item_equals_release_item_and_leaves_global_generators_alone(sysu_prepared):
    root, _ = sysu_prepared
    data = sysu_one_pair(root, 2, 4)
    seed_python_and_torch(9)
    release = data[0]
    state = (random.getstate(), torch.get_rng_state())
    seeded = data[(2, 4, 9)]
    assert state[0] == random.getstate() and torch.equal(state[1], torch.get_rng_state())
    for got, want in zip(seeded, release):
        assert torch.equal(got, want) if torch.is_tensor(want) else got == want
    other = data[(2, 4, 10)]
    assert not all(torch.equal(a, b) for a, b in zip(other[:4], seeded[:4]))


def test_regdb_train_set(regdb_root):
    data = dl.build_train_set('regdb', regdb_root, 40, 20, trial=2)
    paths, labels = dm.read_index_file(os.path.join(regdb_root, 'idx', 'train_thermal_2.txt'), regdb_root,
                                       dm.REGDB_LAYOUT)
    assert data.train_thermal_image.shape == (15, 40, 20, 3) and data.train_thermal_image.dtype == np.uint8
    np.testing.assert_array_equal(data.train_thermal_label, labels)
    assert sorted(set(labels.tolist())) == list(range(5))
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(data.train_thermal_image[i], source_resized(path, 40, 20))
    assert len(data) == 15
    with pytest.raises(ReIDError, match='set cIndex and tIndex'):
        data[0]
    data.cIndex, data.tIndex = np.array([0, 14]), np.array([2, 12])
    assert len(data) == 2 and data[1][4] == 4 and data[1][5] == 4


def test_llcm_train_set(llcm_root):
    data = dl.LLCMData(llcm_root + '/', img_h=32, img_w=16)
    # 5 ids x 9 visible cameras x 2; 5 ids x 8 infrared cameras x 2 minus train_nir/cam9/0002.
    assert data.train_color_image.shape == (90, 32, 16, 3) and data.train_thermal_image.shape == (78, 32, 16, 3)
    assert np.bincount(data.train_thermal_label).tolist() == [16, 14, 16, 16, 16]
    paths, _ = dm.read_index_file(os.path.join(llcm_root, 'idx', 'train_vis.txt'), llcm_root, dm.LLCM_LAYOUT)
    np.testing.assert_array_equal(data.train_color_image[37], source_resized(paths[37], 32, 16))


def test_unknown_dataset():
    with pytest.raises(ReIDError, match="unknown dataset 'market'"):
        dl.build_train_set('market', '.', 64, 32)


# ----------------------------------------------------------------------------------- sampler

COLOR = np.repeat(np.arange(6), [3, 4, 5, 2, 6, 3])
THERMAL = np.repeat(np.arange(6), [2, 2, 3, 4, 1, 2])


def release_sampler(color, thermal, num_pos, batch_size):
    """The release's IdentitySampler loop, with its position lists indexed by label value."""
    color_pos = [[k for k, v in enumerate(color) if v == u] for u in np.unique(color)]
    thermal_pos = [[k for k, v in enumerate(thermal) if v == u] for u in np.unique(thermal)]
    n = max(len(color), len(thermal))
    index1, index2 = [], []
    for _ in range(int(n / (batch_size * num_pos)) + 1):
        batch_idx = np.random.choice(np.unique(color), batch_size, replace=False)
        for i in range(batch_size):
            index1.extend(np.random.choice(color_pos[batch_idx[i]], num_pos))
            index2.extend(np.random.choice(thermal_pos[batch_idx[i]], num_pos))
    return np.array(index1), np.array(index2)


def test_sampler_batches():
    rng = np.random.default_rng(0)
    color, thermal = rng.permutation(COLOR), rng.permutation(THERMAL)
    sampler = dl.IdentitySampler(color, thermal, num_pos=2, batch_size=3)
    assert sampler.N == len(color) == len(sampler) == 23
    assert len(sampler.index1) == len(sampler.index2) == (23 // 6 + 1) * 6
    assert list(sampler) == list(range(len(sampler.index1)))
    c_ids, t_ids = color[sampler.index1], thermal[sampler.index2]
    np.testing.assert_array_equal(c_ids, t_ids)
    for batch in c_ids.reshape(-1, 3, 2):
        assert (batch[:, 0] == batch[:, 1]).all()          # num_pos contiguous images per identity
        assert len(set(batch[:, 0].tolist())) == 3         # batch_size distinct identities


def test_sampler_reproduces_release_stream():
    np.random.seed(11)
    ours = dl.IdentitySampler(COLOR, THERMAL, num_pos=4, batch_size=4)
    second = ours.draw()
    np.random.seed(11)
    first_release = release_sampler(COLOR, THERMAL, 4, 4)
    second_release = release_sampler(COLOR, THERMAL, 4, 4)
    np.testing.assert_array_equal(second[0], second_release[0])
    np.testing.assert_array_equal(second[1], second_release[1])
    np.random.seed(11)
    again = dl.IdentitySampler(COLOR, THERMAL, num_pos=4, batch_size=4)
    np.testing.assert_array_equal(again.index1, first_release[0])
    np.testing.assert_array_equal(again.index2, first_release[1])
    assert not np.array_equal(first_release[0], second_release[0])


def test_batch_sampler_one_process_is_the_release_draw_with_derived_seeds():
    np.random.seed(5)
    batches = dl.TrainBatchSampler(COLOR, THERMAL, num_pos=2, batch_size=3, seed=7)
    with pytest.raises(RuntimeError, match='set_epoch'):
        iter(batches)
    batches.set_epoch(4)
    np.random.seed(5)
    release = release_sampler(COLOR, THERMAL, 2, 3)
    items = [item for batch in batches for item in batch]
    assert len(batches) == len(list(batches)) == 23 // 6 + 1 and all(len(b) == 6 for b in batches)
    np.testing.assert_array_equal([c for c, _, _ in items], release[0])
    np.testing.assert_array_equal([t for _, t, _ in items], release[1])
    seeds = [s for _, _, s in items]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2 ** 63 for s in seeds)
    # the seeds are a function of (seed, epoch, position) only
    np.random.seed(123)
    again = dl.TrainBatchSampler(COLOR, THERMAL, num_pos=2, batch_size=3, seed=7)
    again.set_epoch(4)
    assert [s for b in again for _, _, s in b] == seeds
    again.set_epoch(5)
    assert [s for b in again for _, _, s in b] != seeds


def test_batch_sampler_processes_take_disjoint_blocks_of_one_shared_draw():
    labels = np.repeat(np.arange(8), 3)
    world = 2
    ranks = [dl.TrainBatchSampler(labels, labels, num_pos=2, batch_size=2, seed=3, rank=r, world_size=world,
                                  shared_seed=True) for r in range(world)]
    np.random.seed(0)
    for sampler in ranks:
        sampler.set_epoch(1)
        np.random.seed(99)           # the global generator does not matter with a shared seed
    shared = dl.IdentitySampler(labels, labels, num_pos=2, batch_size=2, world_size=world,
                                rng=np.random.RandomState(3 + 1))
    steps = -(-(24 // 4 + 1) // world)
    assert len(ranks[0]) == len(ranks[1]) == shared.steps == steps
    for step in range(steps):
        blocks = [[labels[c] for c, _, _ in list(sampler)[step]] for sampler in ranks]
        assert not set(blocks[0]) & set(blocks[1])                        # different identities
        expected = labels[shared.index1[step * 8:(step + 1) * 8]]
        np.testing.assert_array_equal(np.concatenate(blocks), expected)    # together, the global step
    seeds = [s for sampler in ranks for batch in sampler for _, _, s in batch]
    assert len(set(seeds)) == len(seeds)
    with pytest.raises(ReIDError, match=r'batch_size 2 x 5 processes is more than the 8 training identities; '
                       r'a step holds distinct identities: run at most 4 processes or give --batch-size 1 or less'):
        dl.TrainBatchSampler(labels, labels, 2, 2, rank=0, world_size=5, shared_seed=True)


def test_persistent_workers_get_each_epochs_draw():
    """Loader workers started once see every epoch's new draw, and make exactly the items the
    main process makes from the same (index, index, seed) triples."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(5), 4)
    images = rng.integers(0, 256, (20, 16, 8, 3), dtype=np.uint8)
    data = dl.TrainData(images, labels, images[::-1].copy(), labels[::-1].copy(), 16, 8)
    batches = dl.TrainBatchSampler(data.train_color_label, data.train_thermal_label, num_pos=2, batch_size=2)
    loader = dl.make_train_loader(data, batches, workers=2, device=torch.device('cpu'))
    epochs = []
    for epoch in range(2):
        batches.set_epoch(epoch)
        got = list(loader)
        expected = [[data[item] for item in batch] for batch in batches]
        assert len(got) == len(expected) == 20 // 4 + 1
        for batch, items in zip(got, expected):
            for k in range(6):
                want = torch.stack([item[k] for item in items]) if k < 4 else torch.tensor([item[k] for item in items])
                assert torch.equal(batch[k], want)
            assert torch.equal(batch[4], batch[5])                 # both modalities of one identity
        epochs.append(torch.cat([b[4] for b in got]))
    assert loader._iterator is not None and loader._iterator._persistent_workers
    assert not torch.equal(epochs[0], epochs[1])


@pytest.mark.parametrize('color, thermal, num_pos, batch_size, message', [
    (COLOR, THERMAL, 2, 7, 'batch_size 7 is more than the 6 training identities; a step holds distinct '
                           'identities: give --batch-size 6 or less'),
    (COLOR, THERMAL[THERMAL != 2], 2, 3, r'identities \[2\] have images in one modality only'),
    (COLOR, THERMAL, 0, 3, r'num_pos \(0\) and batch_size \(3\) must be at least 1'),
])
def test_sampler_validates(color, thermal, num_pos, batch_size, message):
    with pytest.raises(ReIDError, match=message):
        dl.IdentitySampler(color, thermal, num_pos, batch_size)


# ----------------------------------------------------------------------------------- augmentations

def patterned(h=8, w=6):
    return torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w) - 200.0


def test_erasing_fills_one_rectangle_per_channel():
    fill = dl.ERASING_FILL
    for seed in range(20):
        random.seed(seed)
        img = patterned(40, 20)
        out = dl.ChannelRandomErasing(probability=1.0)(img.clone())
        erased = out != img
        rows, cols = erased[0].any(1).nonzero(), erased[0].any(0).nonzero()
        h, w = len(rows), len(cols)
        assert erased[0].sum() == h * w and (erased == erased[0]).all()     # one rectangle, every channel
        assert 0.02 * 800 * 0.5 <= h * w <= 0.4 * 800 * 1.5
        for c in range(3):
            assert (out[c][erased[c]] == torch.tensor(fill[c], dtype=torch.float32)).all()


def release_erased_box(height, width, probability=0.5, sl=0.02, sh=0.4, r1=0.3):
    """The rectangle the release's channel random erasing picks from the global `random` state."""
    if random.uniform(0, 1) > probability:
        return None
    for _ in range(100):
        target_area = random.uniform(sl, sh) * height * width
        aspect_ratio = random.uniform(r1, 1 / r1)
        h = int(round((target_area * aspect_ratio) ** 0.5))
        w = int(round((target_area / aspect_ratio) ** 0.5))
        if w < width and h < height:
            x1 = random.randint(0, height - h)
            y1 = random.randint(0, width - w)
            return x1, y1, h, w
    return None


def test_erasing_draws_the_release_rectangle():
    erased_count = 0
    for seed in range(30):
        random.seed(seed)
        box = release_erased_box(24, 12)
        random.seed(seed)
        img = patterned(24, 12)
        out = dl.ChannelRandomErasing()(img.clone())
        expected = img.clone()
        if box is not None:
            x1, y1, h, w = box
            expected[:, x1:x1 + h, y1:y1 + w] = torch.tensor(dl.ERASING_FILL)[:, None, None]
            erased_count += 1
        assert torch.equal(out, expected)
        next_draw = random.random()        # the same number of draws was consumed
        random.seed(seed)
        release_erased_box(24, 12)
        assert next_draw == random.random()
    assert 5 < erased_count < 25


def test_erasing_probability_and_attempts(monkeypatch):
    img = patterned()
    random.seed(0)
    assert torch.equal(dl.ChannelRandomErasing(probability=0.0)(img.clone()), img)
    calls = []
    real_uniform = random.uniform
    monkeypatch.setattr(random, 'uniform', lambda a, b: calls.append((a, b)) or real_uniform(a, b))
    # A rectangle of the whole area never fits: 1 draw for the probability + 2 per attempt, 100 attempts.
    out = dl.ChannelRandomErasing(probability=1.0, sl=1.0, sh=1.0, r1=1.0)(img.clone())
    assert torch.equal(out, img) and len(calls) == 1 + 100 * 2


@pytest.mark.parametrize('channel', [0, 1, 2])
def test_random_channel_copy(monkeypatch, channel):
    img = patterned()
    monkeypatch.setattr(random, 'randint', lambda a, b: (a, b) == (0, 2) and channel)
    out = dl.RandomChannelCopy()(img.clone())
    for c in range(3):
        assert torch.equal(out[c], img[channel])


@pytest.mark.parametrize('choice, draw, expect', [(0, None, 'copy'), (1, None, 'copy'), (2, None, 'copy'),
                                                  (3, 0.6, 'keep'), (3, 0.4, 'luminance'), (3, 0.5, 'luminance')])
def test_channel_adaptive_gray(monkeypatch, choice, draw, expect):
    img = patterned()
    monkeypatch.setattr(random, 'randint', lambda a, b: (a, b) == (0, 3) and choice)
    monkeypatch.setattr(random, 'uniform', lambda a, b: draw)
    out = dl.ChannelAdaptiveGray(probability=0.5)(img.clone())
    if expect == 'copy':
        assert all(torch.equal(out[c], img[choice]) for c in range(3))
    elif expect == 'keep':
        assert torch.equal(out, img)
    else:
        gray = 0.2989 * img[0] + 0.5870 * img[1] + 0.1140 * img[2]
        assert all(torch.equal(out[c], gray) for c in range(3))
        assert out[0, 0, 0].item() == pytest.approx(0.2989 * -200 + 0.5870 * -152 + 0.1140 * -104, abs=1e-4)


def test_channel_adaptive_gray_frequencies():
    random.seed(0)
    img = patterned()
    outcomes = {'copy': 0, 'keep': 0, 'luminance': 0}
    for _ in range(4000):
        out = dl.ChannelAdaptiveGray()(img.clone())
        if torch.equal(out, img):
            outcomes['keep'] += 1
        elif any(torch.equal(out[0], img[c]) for c in range(3)):
            outcomes['copy'] += 1
        else:
            outcomes['luminance'] += 1
    assert abs(outcomes['copy'] / 4000 - 0.75) < 0.03
    assert abs(outcomes['keep'] / 4000 - 0.125) < 0.02 and abs(outcomes['luminance'] / 4000 - 0.125) < 0.02


def test_plain_view_pads_with_zero_crops_and_normalises():
    seed_python_and_torch(1)
    plain = dl.train_transforms(30, 16)[0]
    mean, std = torch.tensor(dl.IMAGENET_MEAN), torch.tensor(dl.IMAGENET_STD)
    fill = torch.tensor(dl.ERASING_FILL)
    seen_pad = False
    for _ in range(30):
        out = plain(Image.new('RGB', (16, 30), (200, 100, 50)))
        assert out.shape == (3, 30, 16)
        image = ((torch.tensor([200, 100, 50]) / 255 - mean) / std)[:, None, None]
        pad = (-mean / std)[:, None, None]
        is_image, is_pad = torch.isclose(out, image), torch.isclose(out, pad)
        is_fill = out == fill[:, None, None]
        assert (is_image | is_pad | is_fill).all()
        seen_pad |= bool(is_pad.any())
    assert seen_pad


# ----------------------------------------------------------------------------------- test set

def test_test_data_opens_rgb_resizes_and_normalises(tmp_path):
    gray = tmp_path / 'gray.png'
    Image.fromarray(np.arange(48 * 24, dtype=np.uint8).reshape(48, 24) % 251, 'L').save(gray)
    data = dl.TestData([str(gray)], np.array([7]), img_h=20, img_w=10)
    tensor, label = data[0]
    expected = np.array(Image.open(gray).convert('RGB').resize((10, 20), Image.Resampling.LANCZOS))
    want = (torch.from_numpy(expected).permute(2, 0, 1) / 255 - torch.tensor(dl.IMAGENET_MEAN)[:, None, None]) \
        / torch.tensor(dl.IMAGENET_STD)[:, None, None]
    assert label == 7 and tensor.shape == (3, 20, 10)
    torch.testing.assert_close(tensor, want)


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


# ----------------------------------------------------------------------------------- synthetic data

def test_render_identity_is_deterministic_and_modal():
    from ifalnet.toy_datasets import render_identity
    draw = lambda pid, modality, seed: np.asarray(render_identity(pid, modality, np.random.default_rng(seed), (64, 32)))
    assert np.array_equal(draw(3, 'visible', 0), draw(3, 'visible', 0))
    assert not np.array_equal(draw(3, 'visible', 0), draw(3, 'visible', 1))
    infrared = draw(3, 'infrared', 0).astype(int)
    assert infrared.shape == (64, 32, 3) and (infrared[..., 0] == infrared[..., 1]).all() \
        and (infrared[..., 1] == infrared[..., 2]).all()
    # Images of one identity are closer to each other than to another identity's.
    same = np.abs(draw(3, 'visible', 0).astype(int) - draw(3, 'visible', 1)).mean()
    other = np.abs(draw(3, 'visible', 0).astype(int) - draw(4, 'visible', 1)).mean()
    assert same < other


def test_render_identity_inverts_band_luminance_in_infrared():
    from data_loader import LUMINANCE
    from ifalnet.toy_datasets import LEVELS, N_BANDS, identity_look, render_identity
    codes = [tuple(identity_look(pid)['levels']) for pid in range(1, 65)]
    assert len(set(codes)) == 64 and set(np.ravel(codes)) <= set(LEVELS)       # 64 distinct looks
    pid = next(p for p, code in enumerate(codes, start=1) if len(set(code)) == N_BANDS)
    levels = identity_look(pid)['levels']
    lum = lambda img: np.asarray(img, dtype=float) @ np.array(LUMINANCE)
    for seed in range(5):
        visible = lum(render_identity(pid, 'visible', np.random.default_rng(seed), (96, 48)))
        infrared = lum(render_identity(pid, 'infrared', np.random.default_rng(seed), (96, 48)))
        # Band centres on the body's axis: visible follows the levels, infrared their reverse.
        rows = [int((0.04 + 0.92 * (b + 0.5) / N_BANDS) * 96) for b in range(N_BANDS)]
        vis_bands, ir_bands = visible[rows, 22:26].mean(1), infrared[rows, 22:26].mean(1)
        assert np.array_equal(np.argsort(vis_bands), np.argsort(levels))
        assert np.array_equal(np.argsort(ir_bands), np.argsort(-levels))
        assert np.allclose(vis_bands, levels, atol=0.15 * 255)


def test_synthetic_cli(tmp_path):
    out = str(tmp_path / 'llcm')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'synthetic.py'), '--dataset', 'llcm', '--out', out,
                             '--ids', '4', '--images', '1', '--size', '16x8'],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    paths, ids, cams = dm.process_query_llcm(out, mode=2)
    assert len(paths) == 2 * 8 and set(ids.tolist()) == {3, 4}
    assert Image.open(paths[0]).size == (8, 16)


def test_synthetic_does_not_import_torch():
    # Writing a few images needs numpy and Pillow only: importing synthetic (as its CLI does) must not
    # pull in torch (hundreds of MB of memory, seconds of start-up).
    code = 'import sys, synthetic; print("torch" in sys.modules, "data_loader" in sys.modules)'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'False']
    # The grey weights live where both the loader and the generator read them.
    assert dl.LUMINANCE is dm.LUMINANCE == (0.2989, 0.5870, 0.1140)
