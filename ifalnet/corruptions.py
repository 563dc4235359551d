"""Corrupted test images as the corruption benchmark of Chen et al. (NeurIPS 2021 Datasets and
Benchmarks, "Benchmarks for Corruption Invariant Person Re-identification": SYSU-MM01-C, RegDB-C)
defines them: the 19 corruptions of ImageNet-C (Hendrycks and Dietterich, ICLR 2019) as the
`imagecorruptions` package implements them, plus rain, at severities 1-5, applied to the visible
test images after their resize to the test size.

- `CORRUPTIONS`: the 20 names in the benchmark's order (its `RandomCorruption` draws from this list);
  `parse_corruptions`, `parse_severities`: the values of test.py's --corrupt and --severity;
- `corrupt(image, name, severity, seed)`: one corrupted image, the same for the same seed on any
  machine, in any process, batch or order;
- `image_seed`, `mix_draw`: the seed of one image in one setting, and the corruption and severity
  that `mix` (the benchmark's random draw per image) gives it;
- `Corruption`: a setting (one corruption and severity, or `mix`) as the callable that
  data_loader.TestData applies to each resized image;
- `check_installed`: the optional dependency (requirements-corrupt.txt), or a one-line error;
  `warm_up` compiles what data-loader workers would each compile.

Eighteen corruptions run the maintained fork of `imagecorruptions` (`imagecorruptions-imaug`), whose
code is the 2020 package's with the names today's numpy and scikit-image removed replaced (the 2020
package's glass_blur, gaussian_blur and fog fail on them). Its random draws come from numpy's legacy
global generator, which `corrupt` seeds for the call and restores after; glass_blur and impulse_noise
take the seed as an argument. Two are written here from their published definitions:

- frost: ImageNet-C draws one of the first five of its six frost pictures (`randint(5)`), as the 2020
  package does; the fork draws among all six, so it is written here with the five (the pictures are
  the fork's);
- rain: the benchmark's (albumentations 1.1's RandomRain with its rain type, blur and a brightness
  shift per severity); albumentations 2 redefined the drops' number and length, so it is written
  here with albumentations 1.1's definition, drawing from `random.Random(seed)` in that version's
  order, its drops all slanted by 10 pixels as 1.0 and 1.1 draw them. Where a drop is longer than the image is tall (under 60 rows), it starts on the top row
  (albumentations 1.1 fails there).
"""
import hashlib
import importlib
import importlib.metadata
import os
import random
from importlib.resources import as_file, files

import numpy as np
from PIL import Image

from utils import ReIDError

# The benchmark's list (Zoky-2020/CIL-CrossModal, corruption.py), in its order: `mix` draws an index into it.
CORRUPTIONS = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur',
               'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
               'rain', 'jpeg_compression', 'speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
SEVERITIES = (1, 2, 3, 4, 5)
MIX = 'mix'
WRITTEN_HERE = ('frost', 'rain')
SEEDED_BY_ARGUMENT = ('glass_blur', 'impulse_noise')   # the fork's functions that take `seed=`
PACKAGE, PACKAGE_MODULE = 'imagecorruptions-imaug', 'imagecorruptions'
INSTALL = 'python3 -m pip install -r requirements-corrupt.txt'


# ----------------------------------------------------------------------------- the command line's values
def parse_corruptions(text):
    """--corrupt: comma-separated names, 'all' (the 20) or 'mix' -> a tuple of names, or ('mix',)."""
    names = [n.strip() for n in str(text).split(',') if n.strip()]
    if names == ['all']:
        return CORRUPTIONS
    if names == [MIX]:
        return (MIX,)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if not names or unknown or len(set(names)) != len(names):
        what = (f'unknown {", ".join(repr(n) for n in unknown)}' if unknown else
                'a name given twice' if names else 'nothing')
        raise ReIDError(f"--corrupt takes comma-separated corruptions, 'all' or 'mix' (alone), got {text!r} ({what}); "
                        f'the corruptions: {", ".join(CORRUPTIONS)}')
    return tuple(names)


def parse_severities(text):
    """--severity: comma-separated levels in 1..5, or 'all' -> a tuple of ints (all: 1..5)."""
    if str(text).strip() == 'all':
        return SEVERITIES
    try:
        levels = tuple(int(s) for s in str(text).split(',') if s.strip())
    except ValueError:
        levels = ()
    if not levels or any(s not in SEVERITIES for s in levels) or len(set(levels)) != len(levels):
        raise ReIDError(f"--severity takes comma-separated levels in 1..5 or 'all', got {text!r}")
    return levels


def check_installed():
    """The versions of what the corruptions run ({distribution: version}), or a ReIDError naming the
    pip command."""
    try:
        importlib.import_module(PACKAGE_MODULE)
        importlib.import_module('cv2')
        return {PACKAGE: importlib.metadata.version(PACKAGE)}
    except (ImportError, importlib.metadata.PackageNotFoundError) as err:
        raise ReIDError(f'the corruptions need the optional {PACKAGE} ({err}); install it with: {INSTALL}') from None


# ----------------------------------------------------------------------------- seeds
def image_seed(seed, name, severity, key):
    """The seed of image `key` (its path under the data root, '/'-separated) corrupted by `name` at
    `severity` in run seed `seed`: 32 bits of a SHA-256, the same on every platform."""
    digest = hashlib.sha256(f'{seed}:{name}:{severity}:{key}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def mix_draw(seed, key, severity=None):
    """`mix`'s draw for image `key`: (corruption, severity), uniform over CORRUPTIONS and, unless
    `severity` is given, over 1..5, as the benchmark's RandomCorruption draws per image."""
    rng = np.random.default_rng(image_seed(seed, MIX, 0, key))
    name = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
    drawn = int(rng.integers(1, 6))
    return name, severity or drawn


# ----------------------------------------------------------------------------- the corruptions
def corrupt(image, name, severity, seed):
    """`image` (a PIL RGB image or uint8 (H, W, 3) array) with corruption `name` at `severity` (1..5),
    its random draws from `seed`: a PIL RGB image of the same size. The result is truncated to uint8,
    as the benchmark's `np.uint8` does."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if name == 'frost':
        out = frost(np.asarray(pil), severity, np.random.RandomState(seed))
    elif name == 'rain':
        out = rain(np.asarray(pil), severity, random.Random(seed))
    else:
        function = getattr(importlib.import_module(f'{PACKAGE_MODULE}.corruptions'), name)
        extra = {'seed': seed} if name in SEEDED_BY_ARGUMENT else {}
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            out = function(pil, severity, **extra)
        finally:
            np.random.set_state(state)
    out = np.uint8(out)
    if out.shape != (pil.height, pil.width, 3):
        raise ValueError(f'{name} changed the image shape from {(pil.height, pil.width, 3)} to {out.shape}')
    return Image.fromarray(out)


# ImageNet-C's frost: (weight of the image, weight of the frost picture) per severity, and its pictures.
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FROST_PICTURES = ('frost1.png', 'frost2.png', 'frost3.png', 'frost4.jpg', 'frost5.jpg')


def frost(x, severity, rng):
    """ImageNet-C's frost on a uint8 (H, W, 3) array, drawing from the legacy generator `rng` as the
    2020 package draws from numpy's global one: one of five frost pictures, scaled by 1.1 (and first up
    to the image's size if it is smaller), cropped at a random place, blended in."""
    import cv2
    image_weight, frost_weight = FROST[severity - 1]
    picture = FROST_PICTURES[rng.randint(5)]
    with as_file(files(PACKAGE_MODULE) / 'frost' / picture) as path:
        texture = cv2.imread(str(path))                                    # BGR
    h, w = x.shape[:2]
    scale = max(1, h / texture.shape[0], w / texture.shape[1]) * 1.1
    size = (int(np.ceil(texture.shape[1] * scale)), int(np.ceil(texture.shape[0] * scale)))
    texture = cv2.resize(texture, dsize=size, interpolation=cv2.INTER_CUBIC)
    top, left = rng.randint(0, texture.shape[0] - h), rng.randint(0, texture.shape[1] - w)
    texture = texture[top:top + h, left:left + w][..., [2, 1, 0]]
    return np.clip(image_weight * x + frost_weight * texture, 0, 255)


# The benchmark's rain per severity: albumentations 1.1's rain type (image pixels per drop, drop
# length), a box blur of 2 + severity and a brightness shift of -(0.05 + 0.05 severity) of 255.
RAIN_TYPES = {'drizzle': (770, 10), 'heavy': (600, 30), 'torrential': (500, 60)}
RAIN = {1: 'drizzle', 2: 'heavy', 3: 'heavy', 4: 'torrential', 5: 'torrential'}
DROP_COLOUR, SLANT, DRAWN_SLANT = (200, 200, 200), (-10, 10), 10


def rain(x, severity, rnd):
    """The benchmark's rain on a uint8 (H, W, 3) array, drawing from `rnd` (a random.Random) in
    albumentations 1.1's order: the slant, then each drop's start (x, y), placed by that slant; lines
    of the drop colour slanted by 10 pixels whatever the slant drawn (albumentations 1.0 and 1.1, the
    versions of 2021, pass the slant to the drawing only from 1.2 on), a box blur, the HSV round trip of its brightness coefficient (1 here), then the brightness shift
    through a uint8 look-up table."""
    import cv2
    pixels_per_drop, length = RAIN_TYPES[RAIN[severity]]
    h, w = x.shape[:2]
    slant = int(rnd.uniform(*SLANT))
    drops = []
    for _ in range((h * w) // pixels_per_drop):
        start = rnd.randint(slant, w) if slant < 0 else rnd.randint(0, w - slant)
        drops.append((start, rnd.randint(0, max(h - length, 0))))
    out = np.ascontiguousarray(x, dtype=np.uint8).copy()
    for x0, y0 in drops:   # albumentations 1.0-1.1 place the drops by the drawn slant but draw them all at 10
        cv2.line(out, (x0, y0), (x0 + DRAWN_SLANT, y0 + length), DROP_COLOUR, 1)
    blur = 2 + severity
    out = cv2.blur(out, (blur, blur))
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)          # coefficient 1: the round trip only
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    table = np.arange(256, dtype=np.float32)
    table += -(0.05 + 0.05 * severity) * 255
    return cv2.LUT(out, np.clip(table, 0, 255).astype(np.uint8))


def warm_up():
    """Compile the fork's glass_blur (numba, seconds) in this process, so that data-loader workers
    forked from it inherit it instead of compiling it each."""
    corrupt(np.zeros((32, 32, 3), np.uint8), 'glass_blur', 1, 0)


class Corruption:
    """One setting of the benchmark as the callable data_loader.TestData applies to each resized image:
    `name` a corruption or 'mix', `severity` 1..5 (for 'mix' None draws it per image), `seed` the run's
    seed, `root` the data root (an image's key is its path under it). `corruption(image, path)` ->
    the corrupted PIL image."""

    def __init__(self, name, severity, seed, root):
        fixed = severity in SEVERITIES or (name == MIX and severity is None)
        if name not in CORRUPTIONS + (MIX,) or not fixed:
            raise ValueError(f'not a corruption setting: {name!r} at severity {severity!r}')
        self.name, self.severity, self.seed, self.root = name, severity, seed, root

    def key(self, path):
        return os.path.relpath(path, self.root).replace(os.sep, '/')

    def setting(self, path):
        """(corruption, severity) of the image at `path`: this one's, or mix's draw for it."""
        if self.name == MIX:
            return mix_draw(self.seed, self.key(path), self.severity)
        return self.name, self.severity

    def __call__(self, image, path):
        name, severity = self.setting(path)
        return corrupt(image, name, severity, image_seed(self.seed, name, severity, self.key(path)))

    @property
    def label(self):
        """'fog/3', 'mix/1-5' (severity drawn per image) or 'mix/2': the setting's key in the results file."""
        return f'{self.name}/{"1-5" if self.severity is None else self.severity}'
