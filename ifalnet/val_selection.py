"""Model selection on held-out identities (train.py --select val).

The release picks its `_best.t` by the Rank-1 of gallery trial 0 of the test set, so the test set
chooses the model that is then tested on it. With `--select val` some training identities are held
out instead: SYSU-MM01's own `exp/val_id.txt` ids (which the release trains on), for RegDB and LLCM
`--val-ids N` of the training identities (by default 10%), drawn with a fixed seed. They are left
out of the training set, and the model is validated on them as the test protocol does: every
infrared/thermal image of the held-out identities is a query, the gallery one visible image per
identity and camera (single shot, drawn with `random.Random(GALLERY_SEED)`), scored with the
dataset's metric. Nothing here reads the test set.

`held_out_identities` chooses them from the training labels (no image decoded); `HeldOut` holds
the choice (training labels, dataset ids) and `validation_problem` the problems.Problem it gives;
`selection` makes both for train.py (a `Selection`), `describe` and `title` say what they are.
"""
import os
import random
from collections import namedtuple

import numpy as np

import data_manager as dm
from data_loader import listed_index_files
from ifalnet.problems import ImageSet, problem
from ifalnet.report_text import problem_name, sizes
from model import Modal
from utils import ReIDError

# The draw of the held-out RegDB/LLCM identities and of the validation gallery: fixed, whatever
# --seed, so runs with other seeds are selected on the same identities and images.
CHOICE_SEED = 0
GALLERY_SEED = 0
DEFAULT_FRACTION = 10   # percent of the training identities held out by default (RegDB, LLCM)

# `labels`: the held-out identities as labels of the full training set (sorted); `ids`: the same as
# dataset identity numbers (sorted), what the checkpoint and the log record; `total`: the number of
# training identities before any was held out.
HeldOut = namedtuple('HeldOut', 'labels ids total')


def default_count(total):
    """The default --val-ids: 10% of the training identities, rounded, at least one."""
    return max(1, (total * DEFAULT_FRACTION + 50) // 100)


def _sysu_held_out(root):
    """SYSU-MM01: the ids of exp/val_id.txt, as labels of the arrays of process_sysu.py (labels
    0..K-1 in ascending id order over the train + val ids)."""
    read = lambda split: dm.read_id_file(os.path.join(root, 'exp', f'{split}_id.txt'), dm.SYSU_LAYOUT)
    val = sorted({int(pid) for pid in read('val')})
    every = sorted({int(pid) for pid in read('train')} | set(val))
    label_file = os.path.join(root, 'train_rgb_resized_label.npy')
    count = len(np.unique(np.load(label_file)))
    if count != len(every):
        raise ReIDError(f'{label_file} holds {count} identities but exp/train_id.txt and exp/val_id.txt list '
                        f'{len(every)}: the arrays do not belong to these id files; run `python process_sysu.py '
                        f'--data-path {root}` again')
    return HeldOut(np.searchsorted(every, val).tolist(), val, count)


def listed_identity(path):
    """The identity of a RegDB/LLCM training image: the number of the folder holding it
    (`Visible/<id>/...`, `train_vis/camN/<id>/...`)."""
    folder = os.path.basename(os.path.dirname(path))
    if not folder.isdigit():
        raise ReIDError(f'cannot tell the identity of training image {path} for --select val: expected it in a '
                        'folder named by its numeric identity (Visible/<id>/..., train_vis/camN/<id>/...)')
    return int(folder)


def _label_ids(paths, labels, index_file):
    """{training label: dataset identity} of an index file; one identity per label."""
    ids = {}
    for path, label in zip(paths, labels.tolist()):
        pid = ids.setdefault(label, listed_identity(path))
        if pid != listed_identity(path):
            raise ReIDError(f'{index_file}: label {label} is given to identities {pid} and {listed_identity(path)}; '
                            'for --select val every label must be one identity')
    return ids


def held_out_identities(dataset, data_path, trial=1, count=None):
    """The identities held out for validation (a HeldOut), from the training labels alone. `count`
    (--val-ids; None: `default_count`) applies to RegDB and LLCM: that many training labels,
    drawn with CHOICE_SEED."""
    if dm.dataset_info(dataset).prepared_arrays:
        if count is not None:
            raise ReIDError('--val-ids applies to RegDB and LLCM; SYSU-MM01 holds out the ids of its own '
                            'exp/val_id.txt')
        return _sysu_held_out(dm.data_root(data_path, dm.SYSU_LAYOUT))
    root, color_index, _ = listed_index_files(dataset, data_path, trial)
    layout = dm.dataset_info(dataset).layout
    paths, labels = dm.read_index_file(color_index, root, layout)
    label_ids = _label_ids(paths, labels, color_index)
    unique = np.unique(labels)
    count = default_count(len(unique)) if count is None else count
    if not 1 <= count < len(unique):
        raise ReIDError(f'--val-ids {count}: expected 1 to {len(unique) - 1} of the {len(unique)} training identities '
                        f'of {color_index}')
    chosen = np.sort(np.random.default_rng(CHOICE_SEED).choice(unique, count, replace=False))
    return HeldOut(chosen.tolist(), sorted(label_ids[label] for label in chosen.tolist()), len(unique))


def check_enough_left(held, batch_size):
    """The identities left for training must fill a step of --batch-size distinct identities."""
    left = held.total - len(held.labels)
    if left < batch_size:
        raise ReIDError(f'--select val holds out {len(held.labels)} of the {held.total} training identities, leaving '
                        f'{left}, fewer than --batch-size {batch_size} (distinct identities per step): give a '
                        'smaller --val-ids or --batch-size')


def draw_per_camera(images, seed):
    """`images` (an ImageSet) cut to one image per (identity, camera): identities and cameras in
    ascending order, each drawn by `random.choice` over its sorted files from one
    `random.Random(seed)`, as the test galleries are drawn (cameras None: one per identity)."""
    cams = images.cams if images.cams is not None else np.zeros(len(images.paths), dtype=np.int64)
    groups = {}
    for row, key in enumerate(zip(np.asarray(images.ids).tolist(), cams.tolist())):
        groups.setdefault(key, []).append(row)
    rng = random.Random(seed)
    rows = [rng.choice(sorted(groups[key], key=lambda r: images.paths[r])) for key in sorted(groups)]
    return images._replace(paths=[images.paths[r] for r in rows], ids=np.asarray(images.ids)[rows],
                           cams=None if images.cams is None else images.cams[rows])


def _listed_side(dataset, root, index_file, held_labels, modal):
    """The held-out images of one index file as an ImageSet, identified by their training labels
    (the same in both modalities); cameras: LLCM's from the path, None for RegDB (one camera per
    modality)."""
    paths, labels = dm.read_index_file(index_file, root, dm.dataset_info(dataset).layout)
    keep = np.isin(labels, held_labels)
    paths = [p for p, kept in zip(paths, keep) if kept]
    cams = (np.array([dm.parse_camera_and_id(p, root)[0] for p in paths], dtype=np.int64)
            if dm.dataset_info(dataset).has_cameras else None)
    return ImageSet(paths, labels[keep], cams, modal)


def validation_problem(dataset, data_path, held, trial=1, mode='all'):
    """The problems.Problem of the held-out identities: every infrared/thermal image a query, one
    visible image per identity and camera in the gallery (SYSU-MM01: the cameras of `mode`, drawn
    exactly as the test gallery of trial GALLERY_SEED is drawn, over the held-out ids)."""
    if dm.dataset_info(dataset).prepared_arrays:   # SYSU-MM01: the folders of its val ids
        root = dm.data_root(data_path, dm.SYSU_LAYOUT)
        pids = ['%04d' % pid for pid in held.ids]
        query = dm.with_camera_and_id(dm.list_images(root, pids, dm.SYSU_IR_CAMERAS), root,
                                      'held-out infrared images (cam3, cam6)')
        gallery = dm.with_camera_and_id(dm.draw_gallery(root, pids, dm.SYSU_RGB_CAMERAS[mode], GALLERY_SEED), root,
                                        f'held-out visible gallery ({mode}-search cameras)')
        return problem(dataset, ImageSet(*query, Modal.THERMAL), ImageSet(*gallery, Modal.VISIBLE))
    root, color_index, thermal_index = listed_index_files(dataset, data_path, trial)
    query = _listed_side(dataset, root, thermal_index, held.labels, Modal.THERMAL)
    gallery = draw_per_camera(_listed_side(dataset, root, color_index, held.labels, Modal.VISIBLE), GALLERY_SEED)
    return problem(dataset, query, gallery)


def describe(dataset, held, problem):
    """The log line of the held-out identities."""
    return (f'--select val: {len(held.labels)} of the {held.total} {dm.dataset_info(dataset).name} training identities '
            f'held out for model selection (ids {",".join(map(str, held.ids))}), {held.total - len(held.labels)} '
            f'left for training; validation on {len(problem.query.paths)} {dm.dataset_info(dataset).second_modality} queries x '
            f'{len(problem.gallery.paths)} visible gallery images (one per identity and camera, seed {GALLERY_SEED}); '
            'the test set is not read')


# What train.py --select val works with: the held-out identities and their validation problem.
Selection = namedtuple('Selection', 'held problem')


def selection(dataset, data_path, trial=1, count=None, mode='all', batch_size=1):
    """The Selection of a --select val run, checked: `count` is --val-ids (RegDB, LLCM), `trial`
    RegDB's split, `mode` SYSU-MM01's gallery cameras, `batch_size` the identities a step needs."""
    held = held_out_identities(dataset, data_path, trial, count)
    check_enough_left(held, batch_size)
    return Selection(held, validation_problem(dataset, data_path, held, trial, mode))


def title(dataset, chosen, mode='all'):
    """What the validation table scores: 'SYSU-MM01 all-search, infrared -> visible, 12 queries x 8
    gallery (held-out ids 4,5)'."""
    return (f'{problem_name(dataset, chosen.problem, mode)}, {sizes([chosen.problem])} '
            f'(held-out ids {",".join(map(str, chosen.held.ids))})')
