"""data_loader.py: training sets, the identity sampler, the augmentations and the test set."""
import os
import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import data_loader as dl
import data_manager as dm
from utils import ReIDError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_resized(path, img_h, img_w):
    return np.asarray(Image.open(path).convert('RGB').resize((img_w, img_h), Image.Resampling.LANCZOS))


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
