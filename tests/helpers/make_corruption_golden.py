"""Writes tests/golden/corruptions.npz: the reference implementations' own output for every corruption
of the benchmark at every severity, which tests/test_corruptions.py holds ifalnet/corruptions.py to.

Run it twice, each time in an environment with only that reference installed (it does not import this
repository, and each run adds its part to the file):

    # the 2020 imagecorruptions package, the one the benchmark's code imports
    python3 -m venv --system-site-packages /tmp/ic && /tmp/ic/bin/pip install imagecorruptions==1.1.2
    /tmp/ic/bin/python tests/helpers/make_corruption_golden.py imagecorruptions
    # albumentations 1.1.0, the version of the benchmark's rain
    python3 -m venv --system-site-packages /tmp/alb && /tmp/alb/bin/pip install albumentations==1.1.0
    /tmp/alb/bin/python tests/helpers/make_corruption_golden.py rain

The 2020 package fails on today's numpy and scikit-image in three functions only because names were
removed (`np.float_`; `multichannel=True` of skimage.filters.gaussian, now `channel_axis=-1`), so those
two names are put back for the run: the code that computes is the package's. Its impulse_noise leaves
scikit-image's generator unseeded, so it is given the image's seed (as the fork's `seed=` does). Its
frost and the other functions draw from numpy's global generator, seeded per image.

Rain is albumentations 1.1.0's RandomRain (rain type by severity, blur 2 + severity, brightness
coefficient 1) and RandomBrightness (limit -(0.05 + 0.05 severity)), as the benchmark composes them,
each called on its own parameters after `random.seed(seed)` (Compose would first spend draws on
`p`). Rain is drawn on a 96x48 image, since a 32x16 one gets at most one drop.
"""
import os
import random
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'golden', 'corruptions.npz')
NAMES = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur',
         'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate', 'jpeg_compression',
         'speckle_noise', 'gaussian_blur', 'spatter', 'saturate')


def seed_of(i, severity):
    return 7919 * (i + 1) + severity


def package_part():
    import skimage.filters
    import skimage.util
    from PIL import Image
    np.float_ = np.float64                     # removed in numpy 2.0
    import imagecorruptions.corruptions as C
    gaussian = skimage.filters.gaussian

    def gaussian_with_multichannel(*args, multichannel=None, **kwargs):   # removed in scikit-image 0.21
        return gaussian(*args, **({'channel_axis': -1} if multichannel else {}), **kwargs)

    C.gaussian = gaussian_with_multichannel
    image = np.random.default_rng(29).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    part = {'image': image}
    for i, name in enumerate(NAMES):
        outs = []
        for severity in range(1, 6):
            seed = seed_of(i, severity)
            np.random.seed(seed)
            noise = skimage.util.random_noise
            C.sk.util.random_noise = lambda *a, **k: noise(*a, rng=seed, **k)   # impulse_noise's generator
            try:
                outs.append(np.uint8(getattr(C, name)(Image.fromarray(image), severity)))
            finally:
                C.sk.util.random_noise = noise
        part[name] = np.stack(outs)
        part[f'{name}_seeds'] = np.array([seed_of(i, s) for s in range(1, 6)])
    return part


def rain_part():
    import albumentations as A
    from albumentations.augmentations import functional as F
    image = np.random.default_rng(30).integers(0, 256, (96, 48, 3), dtype=np.uint8)
    outs, seeds = [], []
    for severity in range(1, 6):
        kind = {1: 'drizzle', 2: 'heavy', 3: 'heavy', 4: 'torrential', 5: 'torrential'}[severity]
        rain = A.RandomRain(rain_type=kind, blur_value=2 + severity, brightness_coefficient=1, always_apply=True)
        seed = seed_of(100, severity)
        random.seed(seed)
        params = rain.get_params_dependent_on_targets({'image': image})
        out = rain.apply(image, **params)
        out = F.brightness_contrast_adjust(out, 1, -(0.05 + 0.05 * severity), True)
        outs.append(out)
        seeds.append(seed)
    return {'rain_image': image, 'rain': np.stack(outs), 'rain_seeds': np.array(seeds)}


if __name__ == '__main__':
    part = {'imagecorruptions': package_part, 'rain': rain_part}[sys.argv[1]]()
    old = dict(np.load(OUT)) if os.path.exists(OUT) else {}
    np.savez_compressed(OUT, **{**old, **part})
    print(f'{OUT}: {", ".join(sorted({**old, **part}))}')
