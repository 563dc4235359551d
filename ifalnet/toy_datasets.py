"""Small synthetic datasets in the real on-disk layouts of SYSU-MM01, RegDB and LLCM (synthetic.py is
their command line).

The real datasets are licensed, so tests and the demo run on these. Each identity has its own
appearance (three clothing bands, each with a luminance level and a colour); the infrared rendering
inverts the bands' luminance, so an identity is recognisable across modalities only through a
mapping the network has to learn. `render_identity` holds all of the image content, so it can be
tuned without touching the layouts; `make_sysu`, `make_regdb` and `make_llcm` write the layouts, and
a marker file that says the dataset is synthetic and holds its counts as made (`marker`, `made_by`:
synthetic.py and demo.py name their own; see ifalnet/dataset_census.py).
"""
import os

import numpy as np
from PIL import Image

from data_manager import LLCM_CAMERAS as LLCM_TEST_CAMERAS, LUMINANCE, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS
from ifalnet.dataset_census import SYNTHETIC_MARKER, write_marker

MADE_BY = 'ifalnet/toy_datasets.py'   # the marker's word for a dataset made by calling this module directly


def camera_numbers(folders):
    """The camera numbers of data_manager's camera folders ('cam3', 'test_nir/cam3' -> 3)."""
    return tuple(int(os.path.basename(folder)[len('cam'):]) for folder in folders)


SYSU_CAMERAS = {'visible': camera_numbers(SYSU_RGB_CAMERAS['all']), 'infrared': camera_numbers(SYSU_IR_CAMERAS)}
LLCM_CAMERAS = {'vis': camera_numbers(LLCM_TEST_CAMERAS[1]), 'nir': camera_numbers(LLCM_TEST_CAMERAS[2])}


LEVELS = (35, 95, 155, 215)   # luminance of a garment band
N_BANDS = 3                   # bands from shoulders to feet: len(LEVELS) ** N_BANDS = 64 distinct looks


def identity_look(pid):
    """The fixed appearance of identity `pid`: the luminance level of each band and its colour.

    Identities 1..64 have distinct level codes (a fixed permutation of all codes); beyond 64 the
    codes repeat, so such identities differ by colour only in visible light and not in infrared.
    """
    n_codes = len(LEVELS) ** N_BANDS
    code = int(np.random.default_rng(99).permutation(n_codes)[(pid - 1) % n_codes])
    levels = np.array([LEVELS[(code // len(LEVELS) ** band) % len(LEVELS)] for band in range(N_BANDS)], float)
    colors = np.stack([_colour_with_luminance(level, np.random.default_rng([777, pid, band]))
                       for band, level in enumerate(levels)])
    return {'levels': levels, 'colors': colors}


def _colour_with_luminance(level, rng):
    """A random RGB colour whose luminance (the weights `LUMINANCE`) is `level`."""
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        colour += level - colour @ np.array(LUMINANCE)
        if (colour >= 0).all() and (colour <= 255).all():
            return colour
    return np.full(3, float(level))


def render_identity(pid, modality, rng, size):
    """One image of identity `pid` as an RGB PIL image of `size` (h, w).

    A body of three horizontal bands on a random background. In visible light each band has the
    identity's colour; in infrared it is gray with the band's luminance inverted (255 - level, with
    a random gamma), so matching across modalities needs a learnt mapping: a freshly initialised
    network ranks near chance, a briefly trained one does not. `modality` is 'visible' or
    'infrared'; `rng` (a numpy Generator) gives the per-image jitter: shift, body width,
    background, brightness and noise.
    """
    h, w = size
    look = identity_look(pid)
    infrared = modality == 'infrared'
    shift_y, shift_x = rng.uniform(-0.04, 0.04, 2)
    y = (np.arange(h)[:, None] + 0.5) / h - shift_y          # (h, 1) in body coordinates
    x = (np.arange(w)[None, :] + 0.5) / w - 0.5 - shift_x    # (1, w), 0 at the body's axis
    body = (np.abs(x) < rng.uniform(0.55, 0.75) / 2) & (y > 0.04) & (y < 0.96)     # (h, w)
    band = np.clip(((y[:, 0] - 0.04) / 0.92 * N_BANDS).astype(int), 0, N_BANDS - 1)  # (h,)
    if infrared:
        shades = (255 - (look['levels'] / 255) ** rng.uniform(0.8, 1.25) * 255)[:, None]   # (bands, 1)
        background = rng.uniform(60, 190, 1)
    else:
        shades = look['colors']                                                         # (bands, 3)
        background = rng.uniform(40, 220, 3)
    img = np.where(body[..., None], shades[band][:, None, :], background)
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 8, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if infrared:
        img = np.repeat(img, 3, axis=2)
    return Image.fromarray(img, 'RGB')


def _save_image(root, rel_path, pid, modality, size, seed):
    # The jitter depends only on (seed, file), so a file's content does not depend on what else is made.
    rng = np.random.default_rng([seed, *rel_path.encode()])
    path = os.path.join(root, rel_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    render_identity(pid, modality, rng, size).save(path)
    return rel_path


def _marked(root, dataset, marker, made_by):
    """The marker file that says the dataset in `root` is synthetic and what was made (dataset_census.py
    checks a copy against it; synthetic.py's --force replaces only what carries its marker); none if
    `marker` is None."""
    if marker is not None:
        write_marker(root, marker, made_by, dataset)
    return os.fspath(root)


def _write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def _write_ids(path, ids):
    _write_text(path, ','.join(str(pid) for pid in ids) + '\n')


def _write_index(path, rel_paths, labels):
    _write_text(path, ''.join(f'{rel} {label}\n' for rel, label in zip(rel_paths, labels)))


def _camera_folders(prefix, cameras, pid, missing):
    """(camera, `prefix/camN/<id>`) of identity `pid`, leaving out the folders listed in `missing`."""
    folders = [(cam, os.path.join(prefix, f'cam{cam}', '%04d' % pid)) for cam in cameras]
    return [(cam, folder) for cam, folder in folders if os.path.normpath(folder) not in missing]


def make_sysu(root, train_ids=(1, 2, 3, 4), val_ids=(5,), test_ids=(6, 7, 8), images_per_cam=2,
              size=(64, 32), seed=0, missing=(), marker=SYNTHETIC_MARKER, made_by=MADE_BY):
    """SYSU-MM01 layout: cam1..cam6/<4-digit id>/<4-digit>.jpg and exp/{train,val,test}_id.txt.

    `missing` lists folders to leave out, relative to the root (e.g. 'cam2/0007'), so that some
    identity has no image from some camera, as in the real dataset.
    """
    missing = {os.path.normpath(folder) for folder in missing}
    for modality, cameras in SYSU_CAMERAS.items():
        for pid in (*train_ids, *val_ids, *test_ids):
            for _, folder in _camera_folders('', cameras, pid, missing):
                for n in range(1, images_per_cam + 1):
                    _save_image(root, os.path.join(folder, '%04d.jpg' % n), pid, modality, size, seed)
    for split, ids in (('train', train_ids), ('val', val_ids), ('test', test_ids)):
        _write_ids(os.path.join(root, 'exp', f'{split}_id.txt'), ids)
    counts = {(cam, pid): images_per_cam for modality, cameras in SYSU_CAMERAS.items()
              for pid in (*train_ids, *val_ids, *test_ids) for cam, _ in _camera_folders('', cameras, pid, missing)}
    write_sysu_permutations(os.path.join(root, 'exp', 'rand_perm_cam.mat'), counts, seed)
    return _marked(root, 'sysu', marker, made_by)


def write_sysu_permutations(path, counts, seed=0, trials=10, identities=533):
    """exp/rand_perm_cam.mat with the structure of the real file: variable rand_perm_cam, a 6 x 1 cell
    array (camera c in cell c) of 1 x max(533, ids) cell arrays (identity i in entry i), each entry
    a trials x n array whose row t is a permutation of the image numbers 1..n, empty where
    `counts` ({(camera, identity): n}) has no images."""
    from scipy.io import savemat  # only here: the rest of this module needs no scipy
    rng = np.random.default_rng([seed, 533])
    width = max([identities, *(pid for _, pid in counts)])
    cameras = np.empty((6, 1), dtype=object)
    for camera in range(1, 7):
        cell = np.empty((1, width), dtype=object)
        for pid in range(1, width + 1):
            n = counts.get((camera, pid), 0)
            cell[0, pid - 1] = (np.stack([rng.permutation(n) + 1 for _ in range(trials)]).astype(np.float64)
                                if n else np.zeros((0, 0)))
        cameras[camera - 1, 0] = cell
    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {'rand_perm_cam': cameras})


def make_regdb(root, num_ids=12, images_per_id=3, size=(64, 32), seed=0, trials=10, marker=SYNTHETIC_MARKER,
               made_by=MADE_BY):
    """RegDB layout: Visible/<id>/*.bmp, Thermal/<id>/*.bmp and the idx files of `trials` splits.

    Each trial splits the identities in two halves at random; training labels are 0..K-1 in
    ascending id order, test labels are the identities, the same sequence in both modalities.
    """
    ids = np.arange(1, num_ids + 1)
    files = {}
    for folder, modality in (('Visible', 'visible'), ('Thermal', 'infrared')):
        files[folder] = {pid: [_save_image(root, f'{folder}/{pid}/{folder[0].lower()}_{pid:03d}_{n:02d}.bmp',
                                           pid, modality, size, seed)
                               for n in range(1, images_per_id + 1)] for pid in ids}
    for trial in range(1, trials + 1):
        order = np.random.default_rng([seed, trial]).permutation(ids)
        halves = {'train': sorted(order[:num_ids // 2]), 'test': sorted(order[num_ids // 2:])}
        for split, split_ids in halves.items():
            labels = range(len(split_ids)) if split == 'train' else split_ids
            for folder in files:
                rel = [path for pid in split_ids for path in files[folder][pid]]
                lab = [label for pid, label in zip(split_ids, labels) for _ in files[folder][pid]]
                _write_index(os.path.join(root, 'idx', f'{split}_{folder.lower()}_{trial}.txt'), rel, lab)
    return _marked(root, 'regdb', marker, made_by)


def make_llcm(root, train_ids=(1, 2, 3, 4), test_ids=(5, 6, 7), images_per_cam=1, size=(64, 32),
              seed=0, missing=(), marker=SYNTHETIC_MARKER, made_by=MADE_BY):
    """LLCM layout: {train,test}_{vis,nir}/camN/<4-digit id>/*.jpg, idx/train_vis.txt,
    idx/train_nir.txt (labels 0..K-1 in ascending id order) and idx/test_id.txt.

    `missing` lists folders to leave out, relative to the root (e.g. 'test_vis/cam3/0006').
    """
    missing = {os.path.normpath(folder) for folder in missing}
    for band, cameras in LLCM_CAMERAS.items():
        modality = 'visible' if band == 'vis' else 'infrared'
        for split, ids in (('train', train_ids), ('test', test_ids)):
            rel, labels = [], []
            for label, pid in enumerate(sorted(ids)):
                for cam, folder in _camera_folders(f'{split}_{band}', cameras, pid, missing):
                    for n in range(1, images_per_cam + 1):
                        name = f'{pid:04d}_c{cam:02d}_{n:02d}_{band}.jpg'
                        rel.append(_save_image(root, f'{folder}/{name}', pid, modality, size, seed))
                        labels.append(label)
            if split == 'train':
                _write_index(os.path.join(root, 'idx', f'train_{band}.txt'), rel, labels)
    _write_ids(os.path.join(root, 'idx', 'test_id.txt'), test_ids)
    return _marked(root, 'llcm', marker, made_by)
