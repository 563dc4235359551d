"""The three datasets on disk: one record per dataset (`DATASETS`: names, default root, layout, trials,
cameras, the test protocol's query and gallery, the metric and its removal rule, the paper's numbers,
the published statistics of its splits), layouts, id files, index files, and the test lists of the
release.

SYSU-MM01 and LLCM test lists are built the release's way: identities in sorted order, cameras in
the fixed order below, file names sorted; a gallery keeps one random image per (identity, camera)
folder, drawn with the release's `random.seed(trial)` sequence (here from a private generator, so
the caller's global `random` state is left alone). RegDB lists keep the order of the index files.
The camera and identity of an image always come from its path relative to the data root, from the
folder pair `camN/<id>/` just above the file name.
"""
import os
import random
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from PIL import Image

from eval_metrics import eval_llcm, eval_regdb, eval_sysu, llcm_removal, sysu_removal
from utils import ReIDError

SYSU_LAYOUT = ('SYSU-MM01 layout: cam1..cam6/<4-digit id>/<4-digit>.jpg, and exp/train_id.txt, '
               'exp/val_id.txt, exp/test_id.txt, each one comma-separated line of ids')
REGDB_LAYOUT = ('RegDB layout: idx/{train,test}_{visible,thermal}_{trial}.txt (trial 1..10) with lines '
                '"relative/path label", images under Visible/ and Thermal/')
LLCM_LAYOUT = ('LLCM layout: idx/train_vis.txt, idx/train_nir.txt (lines "relative/path label"), '
               'idx/test_id.txt (one comma-separated line of ids), test images under '
               'test_vis/cam1..cam9/<id>/ and test_nir/cam{1,2,4,5,6,7,8,9}/<id>/')

# ITU-R 601 luma weights (R, G, B): the release's grey conversion of thermal views; synthetic.py's
# infrared images invert it. Here, in a module without torch, so that synthetic.py stays light.
LUMINANCE = (0.2989, 0.5870, 0.1140)
# What process_sysu.py writes into the SYSU-MM01 root (the release's file names).
SYSU_ARRAYS = tuple(f'train_{modality}_resized_{kind}.npy' for modality in ('rgb', 'ir') for kind in ('img', 'label'))

SYSU_RGB_CAMERAS = {'all': ('cam1', 'cam2', 'cam4', 'cam5'), 'indoor': ('cam1', 'cam2')}
SYSU_IR_CAMERAS = ('cam3', 'cam6')
# LLCM test modes as the release numbers them: 1 = visible cameras, 2 = near-infrared cameras.
LLCM_CAMERAS = {1: tuple(f'test_vis/cam{c}' for c in range(1, 10)),
                2: tuple(f'test_nir/cam{c}' for c in (1, 2, 4, 5, 6, 7, 8, 9))}

_CAMERA_FOLDER = re.compile(r'cam(\d+)')


def data_root(data_path, layout):
    """Return the data root in one normalised string form, after checking that it is a folder."""
    root = os.path.normpath(os.fspath(data_path))
    if not os.path.isdir(root):
        raise ReIDError(f'data root {data_path} does not exist or is not a folder; expected the {layout}')
    return root


def layout_files(dataset, trials=(1,), training=False, test=True):
    """The files, relative to the root, that a test run (or a training run, which also validates)
    reads first: they tell whether a folder holds the dataset's layout. RegDB's depend on the splits.
    `test=False` (a training run validated on held-out identities) leaves out the test set's."""
    if dataset == 'sysu':
        splits = ('train', 'val', 'test') if training else ('test',)
        return [os.path.join('exp', f'{split}_id.txt') for split in splits if test or split != 'test']
    if dataset == 'llcm':
        names = ('train_vis.txt', 'train_nir.txt', 'test_id.txt') if training else ('test_id.txt',)
        return [os.path.join('idx', name) for name in names if test or name != 'test_id.txt']
    dataset_info(dataset)
    splits = tuple(s for s in (('train', 'test') if training else ('test',)) if test or s != 'test')
    return [os.path.join('idx', f'{split}_{modal}_{trial}.txt')
            for trial in trials for split in splits for modal in ('visible', 'thermal')]


def check_layout(dataset, data_path, trials=(1,), training=False, flag='--data-path', test=True):
    """Check, before a script reads or writes anything, that `data_path` holds the dataset's layout
    (for the RegDB splits `trials`; without the test set's files if not `test`). When the folder
    lacks it but one of its subfolders has it (the dataset's parent passed as the root), the message
    names that subfolder. Returns the root in
    `data_root`'s form."""
    info = dataset_info(dataset)
    layout, name = info.layout, info.name
    root = data_root(data_path, layout)
    needed = layout_files(dataset, trials, training, test)
    has_layout = lambda folder: all(os.path.isfile(os.path.join(folder, f)) for f in needed)
    if not has_layout(root):
        missing = [f for f in needed if not os.path.isfile(os.path.join(root, f))]
        below = [os.path.join(root, child) for child in sorted(os.listdir(root))
                 if os.path.isdir(os.path.join(root, child)) and has_layout(os.path.join(root, child))]
        if below:
            raise ReIDError(f'{flag} {data_path} is not the {name} root (it has no {missing[0]}), but its '
                            f'subfolder {below[0]} is: pass {flag} {below[0]}')
        shown = ', '.join(missing[:4]) + (f' and {len(missing) - 4} more' if len(missing) > 4 else '')
        raise ReIDError(f'{flag} {data_path} is not the {name} root: no {shown} in it; expected the {layout}')
    return root


def check_sysu_prepared(root):
    """After `check_layout`: the arrays process_sysu.py writes into the SYSU-MM01 root exist."""
    unprepared = [f for f in SYSU_ARRAYS if not os.path.isfile(os.path.join(root, f))]
    if unprepared:
        raise ReIDError(f'SYSU-MM01 in {root} is not prepared for training (no {unprepared[0]}): run '
                        f'`python process_sysu.py --data-path {root}` first')


def require_file(path, layout):
    if not os.path.isfile(path):
        raise ReIDError(f'missing file {path}; expected the {layout}')
    return path


def read_id_file(path, layout):
    """Read one comma-separated line of integer ids, returned as the release's 4-digit folder names."""
    require_file(path, layout)
    with open(path, encoding='utf-8-sig') as f:   # a byte-order mark is not part of the first id
        lines = f.read().splitlines()
    fields = [field.strip() for field in lines[0].split(',')] if lines else []
    fields = [field for field in fields if field]
    if not fields:
        raise ReIDError(f'id file {path} lists no identities; expected one comma-separated line of ids')
    try:
        return ['%04d' % int(field) for field in fields]
    except ValueError:
        raise ReIDError(f'id file {path} is not a comma-separated line of integers: {lines[0]!r}') from None


def read_index_file(path, root, layout):
    """Read a `relative/path label` index file; paths are returned joined to `root`, in file order."""
    require_file(path, layout)
    paths, labels = [], []
    with open(path, encoding='utf-8-sig') as f:   # a byte-order mark is not part of the first path
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rsplit(maxsplit=1)
            if len(fields) != 2 or not re.fullmatch(r'-?\d+', fields[1]):
                raise ReIDError(f'{path}, line {number}: expected "relative/path label", got {line.strip()!r}')
            paths.append(os.path.join(root, fields[0]))
            labels.append(int(fields[1]))
    if not paths:
        raise ReIDError(f'index file {path} lists no images; expected lines "relative/path label"')
    return paths, np.array(labels, dtype=np.int64)


# Pillow's modes of one-channel images deeper than 8 bits: 16-bit and 32-bit integers, 32-bit floats.
DEEP_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')


def to_8bit(img, path):
    """A deep one-channel image (say a 16-bit thermal frame) as 8-bit grey, scaled by its own value
    range (its minimum to 0, its maximum to 255): convert('RGB') would clip every value above 255."""
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ReIDError(f'cannot read image {path}: it holds NaN or inf values')
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), 'L')


def open_rgb(path):
    """Open an image as RGB (deep one-channel images scaled to 8 bits by `to_8bit`), or raise a
    ReIDError naming the file."""
    try:
        with Image.open(path) as img:
            return (to_8bit(img, path) if img.mode in DEEP_MODES else img).convert('RGB')
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ReIDError(f'cannot read image {path}: {err}') from None


def read_resized(paths, out, desc='images', min_progress=1000):
    """Decode `paths` as RGB, resize each with LANCZOS to out's (H, W) and store it in `out[i]`.

    `out` is a preallocated uint8 array (N, H, W, 3), possibly a memory map, so that the images
    are never held twice. Progress is printed every 10% for sets of at least `min_progress` images.
    """
    n, img_h, img_w = out.shape[:3]
    if len(paths) != n:
        raise ValueError(f'{len(paths)} paths for an output array of {n} images')
    step = max(1, n // 10)
    for i, path in enumerate(paths):
        out[i] = np.asarray(open_rgb(path).resize((img_w, img_h), Image.Resampling.LANCZOS))
        if n >= min_progress and ((i + 1) % step == 0 or i + 1 == n):
            print(f'  {desc}: {i + 1}/{n}', flush=True)
    return out


def parse_camera_and_id(path, root):
    """Camera number and identity of an image from the folders `camN/<id>/` holding it under `root`.

    Only the path relative to the root is read, so a root that itself contains "cam" is fine.
    """
    parts = os.path.normpath(os.path.relpath(path, root)).split(os.sep)
    camera = _CAMERA_FOLDER.fullmatch(parts[-3]) if len(parts) >= 3 else None
    if camera is None or not parts[-2].isdigit() or parts[0] == os.pardir:
        raise ReIDError(f'cannot parse camera and identity from {path}: expected '
                        f'camN/<numeric id>/<file> under {root}')
    return int(camera.group(1)), int(parts[-2])


def image_folders(root, ids, cameras):
    """Sorted file lists of the existing `root/camera/id` folders: ids sorted, cameras in order."""
    for pid in sorted(ids):
        for camera in cameras:
            folder = os.path.join(root, camera, pid)
            if os.path.isdir(folder):
                yield [os.path.join(folder, name) for name in sorted(os.listdir(folder))]


def list_images(root, ids, cameras):
    return [path for files in image_folders(root, ids, cameras) for path in files]


def draw_gallery(root, ids, cameras, trial):
    """One image per folder, the same ones the release's `random.seed(trial)` + `random.choice` draw."""
    rng = random.Random(trial)
    return [rng.choice(files) for files in image_folders(root, ids, cameras) if files]


def with_camera_and_id(paths, root, what):
    """(paths, ids, cameras) for a test list, refusing an empty one."""
    if not paths:
        raise ReIDError(f'no images found for the {what} under {root}')
    parsed = np.array([parse_camera_and_id(path, root) for path in paths], dtype=np.int64)
    return paths, parsed[:, 1], parsed[:, 0]


def _choose(table, key, name):
    if key not in table:
        raise ReIDError(f'unknown {name} {key!r}; expected one of {", ".join(map(repr, table))}')
    return table[key]


def _sysu_test_ids(data_path):
    root = data_root(data_path, SYSU_LAYOUT)
    return root, read_id_file(os.path.join(root, 'exp', 'test_id.txt'), SYSU_LAYOUT)


def _llcm_test_ids(data_path):
    root = data_root(data_path, LLCM_LAYOUT)
    return root, read_id_file(os.path.join(root, 'idx', 'test_id.txt'), LLCM_LAYOUT)


def process_query_sysu(data_path, mode='all'):
    """Every infrared (cam3, cam6) image of the test identities; the same in both modes."""
    _choose(SYSU_RGB_CAMERAS, mode, 'SYSU-MM01 mode')
    root, ids = _sysu_test_ids(data_path)
    return with_camera_and_id(list_images(root, ids, SYSU_IR_CAMERAS), root, 'SYSU-MM01 query (cam3, cam6)')


def process_gallery_sysu(data_path, mode='all', trial=0, gallery='random', shots=1):
    """The visible gallery of trial `trial` ('all': cam1, 2, 4, 5; 'indoor': cam1, 2): `shots` images
    per identity and camera, drawn as the release draws them (`gallery` 'random'; more than one shot:
    `random.Random(trial).sample`) or the dataset's own permutations ('official', see
    `official_gallery`)."""
    cameras = _choose(SYSU_RGB_CAMERAS, mode, 'SYSU-MM01 mode')
    root, ids = _sysu_test_ids(data_path)
    if gallery == 'official':
        paths = official_gallery(root, ids, cameras, trial, shots)
    elif shots == 1:
        paths = draw_gallery(root, ids, cameras, trial)
    else:
        rng = random.Random(trial)
        paths = [p for files in image_folders(root, ids, cameras) if files
                 for p in rng.sample(files, min(shots, len(files)))]
    what = f'{gallery} {shots}-shot gallery' if (gallery, shots) != ('random', 1) else 'gallery'
    return with_camera_and_id(paths, root, f'SYSU-MM01 {mode} {what}')


SYSU_PERMUTATIONS = os.path.join('exp', 'rand_perm_cam.mat')


def read_sysu_permutations(root):
    """exp/rand_perm_cam.mat, the SYSU-MM01 authors' gallery permutations: {camera number: [entry of
    identity 1, 2, ...]}, each entry a (trials, n) int array whose row t is trial t's order of that
    identity's n image numbers in that camera (1-based: image k is 000k.jpg), or None where the
    identity has no image in that camera. The file's variable `rand_perm_cam` is a 6 x 1 cell array
    (camera c in cell c) of cell arrays over the identities."""
    from scipy.io import loadmat  # scipy is a dependency; imported here, where it is needed
    path = os.path.join(root, SYSU_PERMUTATIONS)
    expected = ('expected the SYSU-MM01 authors\' exp/rand_perm_cam.mat (variable rand_perm_cam: 6 x 1 cells '
                'of per-identity 10 x n permutations), which the dataset ships')
    if not os.path.isfile(path):
        raise ReIDError(f'--gallery official needs {path}, which does not exist; {expected}')
    try:
        cells = loadmat(path)['rand_perm_cam']
    except Exception as err:   # scipy raises several kinds for a damaged file
        raise ReIDError(f'cannot read {path} ({type(err).__name__}: {err}); {expected}') from None
    if not (isinstance(cells, np.ndarray) and cells.dtype == object and cells.size == 6):
        raise ReIDError(f'{path}: rand_perm_cam is not a 6 x 1 cell array; {expected}')
    permutations = {}
    for camera, cell in enumerate(cells.ravel(), start=1):
        entries = np.asarray(cell).ravel()
        if entries.dtype != object:
            raise ReIDError(f'{path}: cell {camera} of rand_perm_cam is not a cell array over identities; {expected}')
        table = []
        for entry in entries:
            entry = np.asarray(entry)
            if entry.size == 0:
                table.append(None)
                continue
            if entry.ndim != 2 or entry.dtype == object or np.any(entry != np.round(entry)) or entry.min() < 1:
                raise ReIDError(f'{path}: camera {camera}, identity {len(table) + 1}: expected a trials x n array '
                                f'of 1-based image numbers, got shape {entry.shape}; {expected}')
            table.append(entry.astype(np.int64))
        permutations[camera] = table
    return permutations


def official_gallery(root, ids, cameras, trial, shots):
    """The gallery of the authors' permutations: for each identity (sorted) and camera (in order), the
    first `shots` image numbers of row `trial` of its permutation (MPANet and MCJA read the file so)."""
    permutations = read_sysu_permutations(root)
    path = os.path.join(root, SYSU_PERMUTATIONS)
    paths = []
    for pid in sorted(ids):
        for camera in cameras:
            table = permutations[int(camera[3:])]
            entry = table[int(pid) - 1] if int(pid) <= len(table) else None
            if entry is None:
                continue
            if trial >= entry.shape[0]:
                raise ReIDError(f'{path} holds {entry.shape[0]} trials of permutations; trial {trial} was asked for')
            paths += [os.path.join(root, camera, pid, '%04d.jpg' % number) for number in entry[trial, :shots]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ReIDError(f'{len(missing)} gallery images named by {path} are missing, first {missing[0]}')
    return paths


def process_query_llcm(data_path, mode=1):
    """Every test image of the mode's cameras (1 = visible, 2 = near-infrared)."""
    cameras = _choose(LLCM_CAMERAS, mode, 'LLCM mode')
    root, ids = _llcm_test_ids(data_path)
    return with_camera_and_id(list_images(root, ids, cameras), root, f'LLCM query (mode {mode})')


def process_gallery_llcm(data_path, mode=1, trial=0):
    """Single-shot gallery of the mode's cameras for gallery trial `trial`."""
    cameras = _choose(LLCM_CAMERAS, mode, 'LLCM mode')
    root, ids = _llcm_test_ids(data_path)
    return with_camera_and_id(draw_gallery(root, ids, cameras, trial), root, f'LLCM gallery (mode {mode})')


def process_test_regdb(data_path, trial=1, modal='visible'):
    """Test images and labels of one RegDB split, in the index file's order."""
    _choose({'visible': None, 'thermal': None}, modal, 'RegDB modality')
    root = data_root(data_path, REGDB_LAYOUT)
    return read_index_file(os.path.join(root, 'idx', f'test_{modal}_{trial}.txt'), root, REGDB_LAYOUT)


def sysu_train_files(data_path):
    """Training images of SYSU-MM01 (train + val ids) per modality, in the release's order."""
    root = data_root(data_path, SYSU_LAYOUT)
    ids = [pid for split in ('train', 'val')
           for pid in read_id_file(os.path.join(root, 'exp', f'{split}_id.txt'), SYSU_LAYOUT)]
    return root, list_images(root, ids, SYSU_RGB_CAMERAS['all']), list_images(root, ids, SYSU_IR_CAMERAS)


# ---------------------------------------------------------------------------------------------
# The test protocols: for one trial, the query and the gallery as (paths, ids, cameras or None,
# modality), modality 'visible' or 'thermal' (the branch: every dataset's infrared images go through
# the thermal one), and whether the release's LLCM pool-feature quirk applies to the scores.

def sysu_test_sides(data_path, trial, mode='all', tvsearch=False, protocol='release', gallery='random', shots=1):
    """Always infrared -> visible: every cam3/cam6 image of the test ids against the trial's gallery."""
    query = (*process_query_sysu(data_path, mode), 'thermal')
    return query, (*process_gallery_sysu(data_path, mode, trial, gallery, shots), 'visible'), False


def regdb_test_sides(data_path, trial, mode='all', tvsearch=False, protocol='release', gallery='random', shots=1):
    """Split `trial`'s test images. The release's RegDB branch ranks visible queries against the thermal
    gallery (and its --tvsearch cannot be switched off); that is the default, `tvsearch` asks for
    thermal -> visible."""
    visible = (*process_test_regdb(data_path, trial, 'visible'), None, 'visible')
    thermal = (*process_test_regdb(data_path, trial, 'thermal'), None, 'thermal')
    return (thermal, visible, False) if tvsearch else (visible, thermal, False)


def llcm_test_sides(data_path, trial, mode='all', tvsearch=False, protocol='release', gallery='random', shots=1):
    """`tvsearch`: infrared queries against trial's sampled visible gallery. Otherwise the release's
    "VIS to IR" (`protocol` 'release'): the sampled infrared images are the queries and every visible test
    image is the gallery, with its pool-feature quirk; 'standard': visible queries, sampled infrared gallery."""
    sampled = lambda mode, modality: (*process_gallery_llcm(data_path, mode, trial), modality)
    every = lambda mode, modality: (*process_query_llcm(data_path, mode), modality)
    if tvsearch:
        return every(2, 'thermal'), sampled(1, 'visible'), False
    if protocol == 'release':
        return sampled(2, 'thermal'), every(1, 'visible'), True
    return every(1, 'visible'), sampled(2, 'thermal'), False


@dataclass(frozen=True)
class Published:
    """One split of a dataset as its paper and the field report it: identities, images per modality
    ('visible' and the dataset's `second_modality` word; a modality left out is not published),
    and for SYSU-MM01's test set the single-shot gallery size per search mode (the number of
    identity-camera folders with images). No dataset publishes per-camera counts in text, so the
    copy's per-camera counts are reported (dataset_census.py) but not checked. `source` says
    where the numbers come from."""
    identities: int
    images: dict
    source: str
    gallery: Optional[dict] = None


# SYSU-MM01 (Wu et al., ICCV 2017; the dataset README, github.com/wuancong/SYSU-MM01): 491 identities,
# 30,071 RGB + 15,792 IR images in all, split 296 train + 99 val + 96 test identities. The README
# gives no per-split image counts; the ones below are the field's (AGW, Ye et al., TPAMI 2021, and
# the VI-ReID papers after it): training on train + val, 395 identities, 22,258 visible + 11,909
# infrared images; test, 96 identities, 3,803 infrared (query) images, and single-shot galleries of
# 301 (all-search, cameras 1, 2, 4, 5) and 112 (indoor, cameras 1, 2) images. The visible test
# images in all are not published. Per camera: the README shows a table as a picture
# (img/overview.jpg), not in text; not transcribed here.
SYSU_PUBLISHED = {
    'train': Published(395, {'visible': 22258, 'infrared': 11909},
                       'the field\'s count (Ye et al., TPAMI 2021) of the train + val identities of Wu et al., ICCV 2017'),
    'test': Published(96, {'infrared': 3803}, 'the field\'s count (Ye et al., TPAMI 2021) of the test identities of '
                      'Wu et al., ICCV 2017', gallery={'all': 301, 'indoor': 112}),
}
# RegDB (Nguyen et al., Sensors 2017): 412 identities, 10 visible + 10 thermal images each, one camera
# per modality. The field's protocol (Ye et al., AAAI 2018 and every paper since) splits them at
# random into 206 training and 206 test identities, ten times: 2,060 images per modality and split.
REGDB_PUBLISHED = {
    split: Published(206, {'visible': 2060, 'thermal': 2060},
                     'Nguyen et al., Sensors 2017 (10 + 10 images of each of 412 identities), halved by the field\'s '
                     'protocol (Ye et al., AAAI 2018)')
    for split in ('train', 'test')
}
# LLCM (Zhang and Wang, CVPR 2023, Sec. 3): 46,767 images of 1,064 identities from 9 cameras; training
# 713 identities with 16,946 visible + 13,975 infrared images, test 351 identities with 8,680 visible +
# 7,166 infrared images (the four counts sum to the abstract's 46,767).
LLCM_PUBLISHED = {
    'train': Published(713, {'visible': 16946, 'infrared': 13975}, 'Zhang and Wang, CVPR 2023'),
    'test': Published(351, {'visible': 8680, 'infrared': 7166}, 'Zhang and Wang, CVPR 2023'),
}


@dataclass(frozen=True)
class Dataset:
    """Everything the scripts know about one dataset. Adding a dataset is a record here (and its readers
    in this module and data_loader.py)."""
    key: str                        # the --dataset value
    name: str                       # as printed and written: 'SYSU-MM01'
    second_modality: str            # its word for the non-visible images ('infrared', 'thermal')
    default_path: str               # --data-path when none is given
    layout: str                     # the expected layout, in words, for messages
    trials: range                   # the test trials: gallery draws, or train/test splits
    split_trials: bool              # True: a trial is a train/test split with a model of its own (RegDB)
    test_sides: Callable            # (data_path, trial, mode, tvsearch, protocol, gallery, shots) -> see above
    test_cameras: Callable          # mode -> the camera folders of the test protocol (() without cameras)
    test_id_file: Optional[str]     # the test identity list, relative to the root (None: per split)
    metric: Callable                # (distmat, q_ids, g_ids, q_cams, g_cams) -> (cmc, mAP, mINP)
    removal: Optional[Callable]     # the gallery items a query does not see (eval_metrics), None: all seen
    modes: tuple                    # the search modes (--mode) of its test protocol, () for none
    gallery_options: bool           # test.py --gallery official and --shots 10 apply (SYSU-MM01)
    prepared_arrays: bool           # training images come from process_sysu.py's arrays (SYSU-MM01)
    paper: tuple                    # the paper's (Rank-1, mAP) and the setting they were measured in
    published: dict                 # {'train': Published, 'test': Published}: the dataset's published statistics
    citation: str                   # the dataset's paper, for messages and model cards

    @property
    def has_cameras(self):
        """Whether test images carry camera numbers (the folders camN/<id>/)."""
        return bool(self.test_cameras('all'))

    def modality_word(self, modality):
        """'visible', or the dataset's word for the thermal branch's images."""
        return 'visible' if modality == 'visible' else self.second_modality


DATASETS = {
    'sysu': Dataset(
        key='sysu', name='SYSU-MM01', second_modality='infrared', default_path='./Datasets/SYSU-MM01/',
        layout=SYSU_LAYOUT, trials=range(10), split_trials=False, test_sides=sysu_test_sides,
        test_cameras=lambda mode: SYSU_IR_CAMERAS + SYSU_RGB_CAMERAS[mode],
        test_id_file=os.path.join('exp', 'test_id.txt'), metric=eval_sysu, removal=sysu_removal,
        modes=tuple(SYSU_RGB_CAMERAS), gallery_options=True, prepared_arrays=True, paper=(0.772, 0.731, 'all-search'),
        published=SYSU_PUBLISHED, citation='Wu et al., ICCV 2017'),
    'regdb': Dataset(
        key='regdb', name='RegDB', second_modality='thermal', default_path='./Datasets/RegDB/',
        layout=REGDB_LAYOUT, trials=range(1, 11), split_trials=True, test_sides=regdb_test_sides,
        test_cameras=lambda mode: (), test_id_file=None,
        metric=lambda distmat, q_ids, g_ids, q_cams=None, g_cams=None: eval_regdb(distmat, q_ids, g_ids),
        removal=None, modes=(), gallery_options=False, prepared_arrays=False, paper=(0.939, 0.899, 'visible -> thermal'),
        published=REGDB_PUBLISHED, citation='Nguyen et al., Sensors 2017'),
    'llcm': Dataset(
        key='llcm', name='LLCM', second_modality='infrared', default_path='./Datasets/LLCM/',
        layout=LLCM_LAYOUT, trials=range(10), split_trials=False, test_sides=llcm_test_sides,
        test_cameras=lambda mode: LLCM_CAMERAS[1] + LLCM_CAMERAS[2],
        test_id_file=os.path.join('idx', 'test_id.txt'), metric=eval_llcm, removal=llcm_removal,
        modes=(), gallery_options=False, prepared_arrays=False, paper=(0.677, 0.506, None),
        published=LLCM_PUBLISHED, citation='Zhang and Wang, CVPR 2023'),
}


def dataset_info(key):
    """The record of --dataset `key`, or a ReIDError naming the known ones."""
    return _choose(DATASETS, key, 'dataset')
