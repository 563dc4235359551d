"""Training and test datasets, the identity sampler and the augmentations of the release.

A training item pairs a visible and a thermal image of one identity, chosen by the identity
sampler, and returns four augmented views plus the two labels.
Images are held once: SYSU-MM01 reads the arrays of `process_sysu.py` as memory maps; RegDB and
LLCM decode the listed images once, at (img_h, img_w), into one uint8 array per modality.
"""
import math
import os
import random

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from data_manager import (DATASETS, LLCM_LAYOUT, LUMINANCE, REGDB_LAYOUT, SYSU_LAYOUT, data_root, open_rgb,
                          read_index_file, read_resized, sysu_train_files)
from utils import ReIDError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ERASING_FILL = (0.4914, 0.4822, 0.4465)


# ---------------------------------------------------------------------------------------------
# Augmentations. They draw in the release's order: crop offsets and flip from torch (as torchvision's
# RandomCrop and RandomHorizontalFlip do), everything else from Python's `random`. Each takes the
# generators to draw from: `rng` (the `random` module or a `random.Random`) and `gen` (None for
# torch's global generator, or a `torch.Generator`), so a seeded run draws what the release draws
# and a training item can draw from generators of its own (see `TrainData.__getitem__`).

class ChannelRandomErasing:
    """With probability `probability`, fill one random rectangle with `fill` (one value per channel).

    Rectangle area in [sl, sh] of the image, aspect ratio in [r1, 1/r1]; up to 100 attempts to fit.
    """

    def __init__(self, probability=0.5, sl=0.02, sh=0.4, r1=0.3, fill=ERASING_FILL):
        self.probability, self.sl, self.sh, self.r1, self.fill = probability, sl, sh, r1, fill

    def __call__(self, img, rng=random):
        if rng.uniform(0, 1) > self.probability:
            return img
        _, height, width = img.shape
        for _ in range(100):
            target_area = rng.uniform(self.sl, self.sh) * height * width
            aspect_ratio = rng.uniform(self.r1, 1 / self.r1)
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < width and h < height:
                top = rng.randint(0, height - h)
                left = rng.randint(0, width - w)
                img[:, top:top + h, left:left + w] = torch.tensor(self.fill, dtype=img.dtype)[:, None, None]
                return img
        return img


def copy_channel(img, channel):
    """All three channels set to `channel` of `img`."""
    return img[channel:channel + 1].expand_as(img).clone()


def luminance(img):
    """All three channels set to the luminance 0.2989 R + 0.5870 G + 0.1140 B."""
    gray = LUMINANCE[0] * img[0] + LUMINANCE[1] * img[1] + LUMINANCE[2] * img[2]
    return gray.expand_as(img).clone()


class RandomChannelCopy:
    """Copy one random channel (R, G or B, uniformly) to all three (the second visible view)."""

    def __call__(self, img, rng=random):
        return copy_channel(img, rng.randint(0, 2))


class ChannelAdaptiveGray:
    """The second thermal view: with probability 3/4 copy one random channel to all three; else,
    with probability `probability`, replace the image by its luminance, otherwise keep it."""

    def __init__(self, probability=0.5):
        self.probability = probability

    def __call__(self, img, rng=random):
        choice = rng.randint(0, 3)
        if choice < 3:
            return copy_channel(img, choice)
        # The release keeps the image when the draw is above the probability.
        return img if rng.uniform(0, 1) > self.probability else luminance(img)


def normalise(img):
    """uint8 (H, W, 3) array -> normalised float (3, H, W) tensor, the same operations (and so the
    same bits) as torchvision's ToTensor followed by Normalize(IMAGENET_MEAN, IMAGENET_STD)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous().float().div(255)
    return x.sub_(torch.tensor(IMAGENET_MEAN)[:, None, None]).div_(torch.tensor(IMAGENET_STD)[:, None, None])


# NORMALISED[c, v]: what `normalise` makes of value v in channel c (computed by `normalise` itself, so
# a lookup gives the same bits as the arithmetic).
NORMALISED = normalise(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2))[:, 0, :].numpy()


class TrainView:
    """One training view: Pad(10) -> RandomCrop(img_h, img_w) -> RandomHorizontalFlip -> ToTensor ->
    Normalize -> channel random erasing (p 0.5) [-> `extra`, a channel transform].

    Pad, crop, flip and normalisation are one pass over the uint8 image: the output starts as the
    padding's normalised value, and the part of the crop window that lies on the image is looked
    up in NORMALISED (mirrored when flipped). It draws exactly what torchvision's
    Pad/RandomCrop/RandomHorizontalFlip draw, so the result is bit-identical to the torchvision
    pipeline under the same seeds. Takes a PIL image or a uint8 (H, W, 3) array.
    """

    def __init__(self, img_h, img_w, extra=None, padding=10):
        self.img_h, self.img_w, self.padding, self.extra = img_h, img_w, padding, extra
        self.erasing = ChannelRandomErasing(probability=0.5)

    def __call__(self, img, rng=random, gen=None):
        img = np.asarray(img)
        pad, (h, w), (out_h, out_w) = self.padding, img.shape[:2], (self.img_h, self.img_w)
        if h + 2 * pad < out_h or w + 2 * pad < out_w:
            raise ValueError(f'padded image {h + 2 * pad}x{w + 2 * pad} is smaller than the crop {out_h}x{out_w}')
        top = left = 0
        if (h + 2 * pad, w + 2 * pad) != (out_h, out_w):  # RandomCrop draws only then
            top = int(torch.randint(0, h + 2 * pad - out_h + 1, size=(1,), generator=gen).item())
            left = int(torch.randint(0, w + 2 * pad - out_w + 1, size=(1,), generator=gen).item())
        flip = bool(torch.rand(1, generator=gen) < 0.5)
        # The crop window in the coordinates of the unpadded image; outside it is the zero padding.
        y0, x0 = top - pad, left - pad
        ys, ye, xs, xe = max(y0, 0), min(y0 + out_h, h), max(x0, 0), min(x0 + out_w, w)
        out = np.empty((3, out_h, out_w), np.float32)
        out[:] = NORMALISED[:, :1, None]
        if ys < ye and xs < xe:
            a, b = xs - x0, xe - x0                       # the image's columns in the output
            if flip:
                a, b = out_w - b, out_w - a
            for c in range(3):
                src = img[ys:ye, xs:xe, c]
                np.take(NORMALISED[c], src[:, ::-1] if flip else src, out=out[c, ys - y0:ye - y0, a:b], mode='clip')
        x = self.erasing(torch.from_numpy(out), rng)
        return x if self.extra is None else self.extra(x, rng)


def train_transforms(img_h, img_w):
    """(plain view, second visible view, second thermal view): see `TrainView`."""
    return (TrainView(img_h, img_w), TrainView(img_h, img_w, RandomChannelCopy()),
            TrainView(img_h, img_w, ChannelAdaptiveGray(probability=0.5)))


def test_transform():
    return T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# ---------------------------------------------------------------------------------------------
# Training sets.

def check_labels(labels, source):
    """Training labels must be 0..K-1 (they index the classifier)."""
    labels = np.asarray(labels)
    unique = np.unique(labels)
    if labels.ndim != 1 or not np.array_equal(unique, np.arange(len(unique))):
        raise ReIDError(f'training labels in {source} are not 0..K-1 (found {len(unique)} distinct labels '
                        f'from {unique.min() if len(unique) else None} to {unique.max() if len(unique) else None})')
    return labels


class TrainData(Dataset):
    """Visible and thermal training images (uint8 (N, H, W, 3) arrays) with their labels.

    An item is (visible 1, visible 2, thermal 1, thermal 2, visible label, thermal label). The
    training loader asks for `(visible index, thermal index, seed)` (see `TrainBatchSampler`): the
    four views then draw from generators seeded with `seed`, so an item does not depend on which
    loader process makes it, or when. `data[i]` reads position i of `cIndex`/`tIndex` (set them
    from `IdentitySampler.index1/index2`) and draws from the global generators, as the release does.
    """

    def __init__(self, color_images, color_labels, thermal_images, thermal_labels, img_h, img_w):
        self.train_color_image, self.train_color_label = color_images, np.asarray(color_labels)
        self.train_thermal_image, self.train_thermal_label = thermal_images, np.asarray(thermal_labels)
        self.img_h, self.img_w = img_h, img_w
        self.transform_plain, self.transform_visible, self.transform_thermal = train_transforms(img_h, img_w)
        self.cIndex = self.tIndex = None

    def _image(self, images, index):
        img = np.asarray(images[index])
        if img.shape[:2] != (self.img_h, self.img_w):
            img = np.asarray(Image.fromarray(img, 'RGB').resize((self.img_w, self.img_h), Image.Resampling.LANCZOS))
        return img

    def __getitem__(self, item):
        if isinstance(item, (tuple, list)):
            color, thermal, seed = (int(v) for v in item)
            rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        else:
            if self.cIndex is None or self.tIndex is None:
                raise ReIDError('set cIndex and tIndex (from IdentitySampler.index1/index2) before reading items')
            color, thermal = self.cIndex[item], self.tIndex[item]
            rng, gen = random, None
        img_c = self._image(self.train_color_image, color)
        img_t = self._image(self.train_thermal_image, thermal)
        # Same order of random draws as the release: visible 1, visible 2, thermal 1, thermal 2.
        return (self.transform_plain(img_c, rng, gen), self.transform_visible(img_c, rng, gen),
                self.transform_plain(img_t, rng, gen), self.transform_thermal(img_t, rng, gen),
                int(self.train_color_label[color]), int(self.train_thermal_label[thermal]))

    def __len__(self):
        if self.cIndex is None:
            return max(len(self.train_color_label), len(self.train_thermal_label))
        return len(self.cIndex)


def _load_sysu_arrays(root, modality):
    """Memory-mapped images and labels written by process_sysu.py (or by the release)."""
    arrays = []
    for kind in ('img', 'label'):
        path = os.path.join(root, f'train_{modality}_resized_{kind}.npy')
        if not os.path.isfile(path):
            raise ReIDError(f'missing {path}: prepare SYSU-MM01 first with '
                            f'`python process_sysu.py --data-path {root}`')
        if os.path.getsize(path) == 0:
            raise ReIDError(f'{path} is empty (0 bytes); run `python process_sysu.py --data-path {root}` again')
        try:
            arrays.append(np.load(path, mmap_mode='r' if kind == 'img' else None))
        except (OSError, ValueError, EOFError) as err:
            raise ReIDError(f'cannot read {path} ({err}); run `python process_sysu.py --data-path {root}` again')
    images, labels = arrays
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) != len(labels):
        raise ReIDError(f'{root}: train_{modality}_resized_img.npy {images.dtype} {images.shape} does not match '
                        f'{len(labels)} labels as uint8 (N, H, W, 3); run `python process_sysu.py --data-path {root}`')
    return images, check_labels(labels, os.path.join(root, f'train_{modality}_resized_label.npy'))


class Rows:
    """Rows `rows` of an array, read one at a time (`rows[i]` of the base for item i): a training set
    without some identities that leaves a memory map unread and uncopied."""

    def __init__(self, base, rows):
        self.base, self.rows = base, np.asarray(rows)

    def __getitem__(self, i):
        return self.base[self.rows[i]]

    def __len__(self):
        return len(self.rows)


def without_labels(labels, held_out):
    """(rows kept, their labels renumbered 0..K'-1 in ascending order) once the labels `held_out` are
    left out."""
    rows = np.flatnonzero(~np.isin(labels, held_out))
    kept = labels[rows]
    return rows, np.searchsorted(np.unique(kept), kept).astype(labels.dtype)


class SYSUData(TrainData):
    """SYSU-MM01 training set from the four arrays of process_sysu.py, memory-mapped (no copy in RAM).

    Images stored at another size than (img_h, img_w) are resized per item with LANCZOS. `held_out`
    (labels of the arrays) leaves those identities out (`--select val`); the rest are renumbered
    0..K'-1 and `rows` holds, per modality, the array row of each item (None: every row).
    """

    def __init__(self, data_path, img_h=384, img_w=192, held_out=()):
        self.root = data_root(data_path, SYSU_LAYOUT)
        (color, color_labels), (thermal, thermal_labels) = (_load_sysu_arrays(self.root, m) for m in ('rgb', 'ir'))
        self.rows = {'rgb': None, 'ir': None}
        if len(held_out):
            (self.rows['rgb'], color_labels), (self.rows['ir'], thermal_labels) = (
                without_labels(color_labels, held_out), without_labels(thermal_labels, held_out))
        super().__init__(self._view(color, 'rgb'), color_labels, self._view(thermal, 'ir'), thermal_labels, img_h, img_w)

    def _view(self, images, modality):
        return images if self.rows[modality] is None else Rows(images, self.rows[modality])

    # Pickling a memory map copies all of its data; DataLoader workers started by spawn or
    # forkserver receive the root instead and map the files again.
    def __getstate__(self):
        state = dict(self.__dict__)
        del state['train_color_image'], state['train_thermal_image']
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.train_color_image = self._view(_load_sysu_arrays(self.root, 'rgb')[0], 'rgb')
        self.train_thermal_image = self._view(_load_sysu_arrays(self.root, 'ir')[0], 'ir')


def _load_listed(index_file, root, layout, img_h, img_w, desc, held_out=()):
    paths, labels = read_index_file(index_file, root, layout)
    check_labels(labels, index_file)
    if len(held_out):   # left out before decoding: their images are never read
        rows, labels = without_labels(labels, held_out)
        paths = [paths[i] for i in rows]
    for path in paths:
        if not os.path.isfile(path):
            raise ReIDError(f'{index_file} lists {path}, which does not exist')
    images = read_resized(paths, np.empty((len(paths), img_h, img_w, 3), np.uint8), desc=desc)
    return images, labels


class ListedTrainData(TrainData):
    """Training set given by two `relative/path label` index files (RegDB, LLCM); the images are
    decoded once and resized to (img_h, img_w) at construction, as the release does. `held_out`
    (training labels) leaves those identities out, the rest renumbered 0..K'-1."""

    def __init__(self, root, color_index, thermal_index, layout, img_h, img_w, second='thermal', held_out=()):
        color = _load_listed(color_index, root, layout, img_h, img_w, 'visible images', held_out)
        thermal = _load_listed(thermal_index, root, layout, img_h, img_w, f'{second} images', held_out)
        super().__init__(*color, *thermal, img_h, img_w)


def listed_index_files(dataset, data_path, trial=1):
    """(root, visible index file, second-modality index file) of RegDB's split `trial` or of LLCM."""
    layout = REGDB_LAYOUT if dataset == 'regdb' else LLCM_LAYOUT
    root = data_root(data_path, layout)
    idx = os.path.join(root, 'idx')
    if dataset == 'regdb':
        return root, os.path.join(idx, f'train_visible_{trial}.txt'), os.path.join(idx, f'train_thermal_{trial}.txt')
    return root, os.path.join(idx, 'train_vis.txt'), os.path.join(idx, 'train_nir.txt')


class RegDBData(ListedTrainData):
    def __init__(self, data_path, trial, img_h=288, img_w=144, held_out=()):
        super().__init__(*listed_index_files('regdb', data_path, trial), REGDB_LAYOUT, img_h, img_w, held_out=held_out)


class LLCMData(ListedTrainData):
    def __init__(self, data_path, img_h=384, img_w=192, held_out=()):
        super().__init__(*listed_index_files('llcm', data_path), LLCM_LAYOUT, img_h, img_w, DATASETS['llcm'].second_modality,
                         held_out)


def build_train_set(dataset, data_path, img_h, img_w, trial=1, held_out=()):
    """The training set of `dataset` ('sysu', 'regdb' or 'llcm'); `trial` is RegDB's split; `held_out`
    the training labels to leave out (train.py --select val)."""
    if dataset == 'sysu':
        return SYSUData(data_path, img_h, img_w, held_out)
    if dataset == 'regdb':
        return RegDBData(data_path, trial, img_h, img_w, held_out)
    if dataset == 'llcm':
        return LLCMData(data_path, img_h, img_w, held_out)
    raise ReIDError(f"unknown dataset {dataset!r}; expected 'sysu', 'regdb' or 'llcm'")

def source_image_size(dataset, data_path, trial=1, sample=64):
    """The median (height, width) of up to `sample` of the training image files (evenly spread over the
    visible ones; only their headers are read): the size the images had before any resizing (the SYSU-MM01
    arrays of process_sysu.py hold them resized). None when no file can be read."""
    if dataset == 'sysu':
        paths = sysu_train_files(data_path)[1]
    else:
        root, color_index, _ = listed_index_files(dataset, data_path, trial)
        paths = read_index_file(color_index, root, REGDB_LAYOUT if dataset == 'regdb' else LLCM_LAYOUT)[0]
    sizes = []
    for path in paths[::max(1, len(paths) // sample)][:sample]:
        try:
            with Image.open(path) as img:
                sizes.append((img.height, img.width))
        except (OSError, ValueError):
            continue
    return tuple(int(v) for v in np.median(np.array(sizes), axis=0)) if sizes else None


def count_train_identities(dataset, data_path, trial=1, held_out=()):
    """The number of training identities (the classifier's classes) from the labels alone, no image
    decoded, less the `held_out` labels: what train.py checks a checkpoint against before it starts."""
    if dataset == 'sysu':
        labels = _load_sysu_arrays(data_root(data_path, SYSU_LAYOUT), 'rgb')[1]
    else:
        root, color_index, _ = listed_index_files(dataset, data_path, trial)
        layout = REGDB_LAYOUT if dataset == 'regdb' else LLCM_LAYOUT
        labels = check_labels(read_index_file(color_index, root, layout)[1], color_index)
    return len(np.setdiff1d(np.unique(labels), held_out))


# ---------------------------------------------------------------------------------------------
# Identity sampler.

class IdentitySampler(Sampler):
    """Per epoch: batches of `batch_size` distinct identities, `num_pos` images of each identity
    per modality (with replacement), each identity's images contiguous; drawn in the release's
    order from numpy's global generator (or `rng`), so `np.random.seed` reproduces the release's
    epochs.

    `index1` (visible) and `index2` (thermal) hold the dataset positions; `N` = max(#visible,
    #thermal). Call `draw()` for a new epoch (or build a new sampler, as the release does).
    With `world_size` W > 1 every step draws W x batch_size distinct identities (one block of
    batch_size per process, see `TrainBatchSampler`) and there are `steps` = ceil(release's batch
    count / W) steps, so an epoch sees as many images as on one process.
    """

    def __init__(self, train_color_label, train_thermal_label, num_pos, batch_size, world_size=1,
                 rng=None, draw=True):
        color, thermal = np.asarray(train_color_label), np.asarray(train_thermal_label)
        if num_pos < 1 or batch_size < 1:
            raise ReIDError(f'num_pos ({num_pos}) and batch_size ({batch_size}) must be at least 1')
        self.unique_labels = np.unique(color)
        missing = np.setxor1d(self.unique_labels, np.unique(thermal))
        if len(missing):
            raise ReIDError(f'identities {missing[:10].tolist()} have images in one modality only; every '
                            'training identity needs images of both modalities')
        if len(self.unique_labels) < batch_size * world_size:
            across = f' x {world_size} processes' if world_size > 1 else ''
            n = len(self.unique_labels)
            ways = [f'run at most {n // batch_size} processes'] if world_size > 1 and n >= batch_size else []
            ways += [f'give --batch-size {n // world_size} or less'] if n >= world_size else []
            raise ReIDError(f'batch_size {batch_size}{across} is more than the {n} training identities; a step '
                            f'holds distinct identities: {" or ".join(ways) or "use fewer processes"}')
        # The release indexes its position lists by label value, which equals the position in
        # unique_labels for labels 0..K-1; the dictionary gives the same lists for any labels.
        self.color_pos = {label: np.flatnonzero(color == label) for label in self.unique_labels}
        self.thermal_pos = {label: np.flatnonzero(thermal == label) for label in self.unique_labels}
        self.num_pos, self.batch_size, self.world_size = num_pos, batch_size, world_size
        self.N = max(len(color), len(thermal))
        # Release quirk: N // (batch_size * num_pos) + 1 batches are drawn, one more than __len__
        # (= N samples) reports; the loader yields them all. Kept so the random stream matches.
        self.steps = -(-(self.N // (batch_size * num_pos) + 1) // world_size)
        self.index1 = self.index2 = None
        if draw:
            self.draw(rng)

    def draw(self, rng=None):
        """Draw a new epoch's index1 and index2 from `rng` (default: numpy's global generator)."""
        rng = np.random if rng is None else rng
        color, thermal = [], []
        for _ in range(self.steps):
            for label in rng.choice(self.unique_labels, self.batch_size * self.world_size, replace=False):
                color.append(rng.choice(self.color_pos[label], self.num_pos))
                thermal.append(rng.choice(self.thermal_pos[label], self.num_pos))
        self.index1, self.index2 = np.concatenate(color), np.concatenate(thermal)
        return self.index1, self.index2

    def __iter__(self):
        return iter(np.arange(len(self.index1)))

    def __len__(self):
        return self.N


class TrainBatchSampler(Sampler):
    """The training batches of one process, for `DataLoader(batch_sampler=...)`: each batch a list
    of `(visible index, thermal index, augmentation seed)`, batch_size identities x num_pos.

    `set_epoch(epoch)` draws the epoch before it is iterated. Identities come from numpy's global
    generator (one process: the release's stream), or, with `shared_seed`, from a generator seeded
    with seed + epoch, so that every process draws the same global sequence and takes block `rank`
    of each step. The items carry their dataset indices, so loader workers that persist across
    epochs get each epoch's draw without the dataset being changed under them, and each item's
    augmentation seed is derived from (seed, epoch, position): the pixels of a batch depend neither
    on the number of loader workers nor on a resume.
    """

    def __init__(self, train_color_label, train_thermal_label, num_pos, batch_size, seed=0, rank=0,
                 world_size=1, shared_seed=False):
        if not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} is outside 0..{world_size - 1}')
        self.identities = IdentitySampler(train_color_label, train_thermal_label, num_pos, batch_size,
                                          world_size, draw=False)
        self.seed, self.rank, self.world_size, self.shared_seed = seed, rank, world_size, shared_seed
        self.batches = None

    def set_epoch(self, epoch):
        ids = self.identities
        ids.draw(np.random.RandomState(self.seed + epoch) if self.shared_seed else None)
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(len(ids.index1), np.uint64)
        seeds &= np.uint64(2 ** 63 - 1)
        size = ids.batch_size * ids.num_pos
        blocks = [slice((step * self.world_size + self.rank) * size, (step * self.world_size + self.rank + 1) * size)
                  for step in range(ids.steps)]
        self.batches = [list(zip(ids.index1[b].tolist(), ids.index2[b].tolist(), seeds[b].tolist()))
                        for b in blocks]

    def __iter__(self):
        if self.batches is None:
            raise RuntimeError('call set_epoch(epoch) before iterating a TrainBatchSampler')
        return iter(self.batches)

    def __len__(self):
        return self.identities.steps


def make_train_loader(trainset, batches, workers, device, worker_init_fn=None):
    """The training loader: its worker processes persist across epochs (call
    `batches.set_epoch(epoch)` before each epoch), batches go to pinned memory on CUDA. The loader's
    own seed comes from a private generator, so making it leaves torch's global stream alone (the
    augmentation draws from the seeds the batches carry). `worker_init_fn` runs in each worker as it
    starts (the scripts pass one that leaves SIGINT and SIGTERM to the main process)."""
    return DataLoader(trainset, batch_sampler=batches, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == 'cuda', generator=torch.Generator(),
                      worker_init_fn=worker_init_fn)


# ---------------------------------------------------------------------------------------------
# Test set.

class TestData(Dataset):
    """Test images opened as RGB, resized with LANCZOS to (img_w, img_h) and normalised; items are
    (tensor, label). The files are checked at construction and decoded per item."""

    __test__ = False   # a dataset, not a pytest test class

    def __init__(self, img_paths, labels, img_h, img_w):
        if len(img_paths) != len(labels):
            raise ValueError(f'{len(img_paths)} image paths but {len(labels)} labels')
        missing = [path for path in img_paths if not os.path.isfile(path)]
        if missing:
            raise ReIDError(f'{len(missing)} test images are missing, first {missing[0]}')
        self.img_paths, self.labels = list(img_paths), np.asarray(labels)
        self.img_h, self.img_w = img_h, img_w
        self.transform = test_transform()

    def __getitem__(self, i):
        img = open_rgb(self.img_paths[i]).resize((self.img_w, self.img_h), Image.Resampling.LANCZOS)
        return self.transform(img), int(self.labels[i])

    def __len__(self):
        return len(self.img_paths)
