"""The features file of `test.py --save-features FILE.npz`: every embedded test image with its four
feature vectors, and each trial's query and gallery, so that any score or figure can be redone
without embedding again (visualize.py reads it).

An uncompressed numpy .npz without pickled objects (`np.load(path)` reads it):
  meta            0-d str, JSON: {"kind": "ifalnet-features", "version": 1, "dataset", "mode",
                  "protocol", "tvsearch", "data_root" (absolute), "img_h", "img_w", "arch",
                  "llcm_pool_quirk", "checkpoints": [one path per model], "trials": [...],
                  "trial_models": [index into "checkpoints", per trial], the test-time options
                  "flip", "gallery", "shots" (absent from older files: False, "random", 1), and
                  "environment", the stamp of the run that wrote it (environment_stamp.py; absent
                  from older files)}
  path            (N,) str    image path relative to meta["data_root"]
  identity        (N,) int64
  camera          (N,) int64  camera number; -1 where the dataset has none (RegDB)
  modality        (N,) int64  network branch used: 1 = visible, 2 = thermal/infrared (model.Modal)
  model           (N,) int64  index into meta["checkpoints"] of the model that embedded the row
  pool_ori, pool_mid, bn_ori, bn_mid   (N, 2048) float32: the l2-normalised pool and bn features
                  of the original and the middle-modality branch (a network without the middle
                  modality, train.py --no-middle: pool_ori and bn_ori only)
  query_<t>, gallery_<t>   int64 row indices of trial t's query and gallery, in test.py's order

A row is one image as embedded by one model: an image shared by several trials of one model is
stored once; RegDB with one model per split ({trial} in --resume) stores each split's own rows.
test.py scores a trial from `rows(query_<t>)` and `rows(gallery_<t>)` in float64 with
`scoring.score_similarities(q, g, meta["llcm_pool_quirk"])` and the dataset's metric
(`test.py --from-features FILE` does it: `saved_problems` and `SavedBank`).

`Features` checks a file before anything is computed from it: the dataset is one this code knows,
index arrays are whole numbers within range, every feature array is (N, 2048) floats, no trial's
query or gallery is empty; a damaged file is one line naming the array.
"""
import json
import os
import zipfile

import numpy as np

from data_manager import DATASETS, dataset_info
from ifalnet.atomic import atomic_write
from ifalnet.problems import ImageSet, problem
from model import Modal
from utils import ReIDError

KIND = 'ifalnet-features'
VERSION = 1
# The four vectors of an image, in the order of the feature bank's rows and of the export's `features`
# output; a network without the middle modality (train.py --no-middle) has the original two.
FEATURE_NAMES = ('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')
ORIGINAL_FEATURES = ('pool_ori', 'bn_ori')
FEATURE_WIDTH = 2048   # ResNet-50's last stage: every feature vector
NO_CAMERA = -1
META_KEYS = ('dataset', 'mode', 'protocol', 'tvsearch', 'data_root', 'img_h', 'img_w', 'arch',
             'llcm_pool_quirk', 'checkpoints', 'trials', 'trial_models')


def _compact(values):
    """float32 when that holds the values exactly (the network's output), else as given."""
    small = values.astype(np.float32)
    return small if np.array_equal(small, values) else values


def feature_arrays(runs, data_path, meta):
    """The file's arrays. `runs`: one `(checkpoint, problems, bank)` per model, with test.py's
    `{trial: Problem}` and the FeatureBank that embedded them (only `bank.get(image_set)` is used)."""
    root = os.path.abspath(data_path)
    rows = {}                                   # (model, modality, path) -> row
    columns = {name: [] for name in ('path', 'identity', 'camera', 'modality', 'model')}
    blocks = {}   # feature name -> blocks of rows (FEATURE_NAMES, or ORIGINAL_FEATURES without the middle modality)
    arrays = {}
    for model, (_, problems, bank) in enumerate(runs):
        for trial, pr in problems.items():
            for side in ('query', 'gallery'):
                images = getattr(pr, side)
                new = [i for i, p in enumerate(images.paths) if (model, images.modal, p) not in rows]
                if new:
                    cams = None if images.cams is None else np.asarray(images.cams)[new]
                    subset = images._replace(paths=[images.paths[i] for i in new],
                                             ids=np.asarray(images.ids)[new], cams=cams)
                    feats = bank.get(subset)
                    for name in feats:
                        blocks.setdefault(name, []).append(feats[name])
                    for k, i in enumerate(new):
                        path = images.paths[i]
                        rows[(model, images.modal, path)] = len(rows)
                        relative = os.path.relpath(os.path.abspath(path), root)
                        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
                            raise ReIDError(f'test image {path} is not under the data root {root}')
                        columns['path'].append(relative)
                        columns['identity'].append(int(images.ids[i]))
                        columns['camera'].append(NO_CAMERA if cams is None else int(cams[k]))
                        columns['modality'].append(int(images.modal))
                        columns['model'].append(model)
                arrays[f'{side}_{trial}'] = np.array([rows[(model, images.modal, p)] for p in images.paths],
                                                     dtype=np.int64)
    arrays['path'] = np.array(columns.pop('path'), dtype=str)
    arrays.update({name: np.array(values, dtype=np.int64) for name, values in columns.items()})
    if len({tuple(bank.names) for _, _, bank in runs if hasattr(bank, 'names')}) > 1:
        raise ReIDError('the models of one features file must all have the middle modality, or all lack it')
    arrays.update({name: _compact(np.concatenate(blocks[name])) for name in blocks})
    trials = [t for _, problems, _ in runs for t in problems]
    trial_models = [m for m, (_, problems, _) in enumerate(runs) for _ in problems]
    meta = {'kind': KIND, 'version': VERSION, **meta, 'data_root': root,
            'checkpoints': [os.path.abspath(ckpt) for ckpt, _, _ in runs],
            'trials': trials, 'trial_models': trial_models}
    arrays['meta'] = np.array(json.dumps(meta))
    return arrays


def save_features(path, runs, data_path, meta):
    arrays = feature_arrays(runs, data_path, meta)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return arrays


class Features:
    """A features file, checked on load. `rows(index)` gives the four float64 feature matrices
    (test.py's precision) of the given rows."""

    def __init__(self, path):
        self.source = os.fspath(path)
        expected = 'a features file written by test.py --save-features'
        if os.path.isdir(self.source):
            raise ReIDError(f'{self.source} is a folder; expected {expected}')
        if os.path.isfile(self.source) and os.path.getsize(self.source) == 0:
            raise ReIDError(f'{self.source} is empty (0 bytes); expected {expected}')
        try:
            data = np.load(self.source)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError('a single array, not an .npz archive')
            with data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise ReIDError(f'features file not found: {self.source}') from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ReIDError(f'cannot read {self.source} ({err}); expected {expected}') from None
        if 'meta' not in arrays:
            raise ReIDError(f'{self.source} has no "meta" entry: expected {expected}')
        try:
            meta = json.loads(str(arrays['meta']))
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get('kind') != KIND:
            raise ReIDError(f'{self.source} is not {expected} (no "meta" of kind {KIND!r})')
        if meta.get('version') != VERSION:
            raise ReIDError(f'{self.source} is a features file of version {meta.get("version")}; '
                            f'this code reads version {VERSION}')
        absent = [k for k in META_KEYS if k not in meta]
        if absent:
            raise ReIDError(f'{self.source}: "meta" lacks {", ".join(absent)}: a damaged features file')
        self._check_meta(meta)
        trial_keys = [f'{side}_{t}' for t in meta['trials'] for side in ('query', 'gallery')]
        # A network without the middle modality (train.py --no-middle) gives the original features only.
        names = FEATURE_NAMES if any(k in arrays for k in ('pool_mid', 'bn_mid')) else ORIGINAL_FEATURES
        missing = [k for k in ('path', 'identity', 'camera', 'modality', 'model', *names, *trial_keys)
                   if k not in arrays]
        if missing:
            raise ReIDError(f'{self.source} lacks the arrays {", ".join(missing)}: a damaged features file')
        self._check_arrays(arrays, names, trial_keys, meta)
        nonfinite = [k for k in names if not np.isfinite(arrays[k]).all()]
        if nonfinite:
            raise ReIDError(f'{self.source}: the features {", ".join(nonfinite)} hold NaN or inf values (the network '
                            'that embedded them produced them); no figure or score can be made from them')
        self.meta, self.arrays, self.names = meta, arrays, names
        self.dataset, self.trials = meta['dataset'], list(meta['trials'])
        self.path, self.identity, self.camera = arrays['path'], arrays['identity'], arrays['camera']
        self.modality, self.model = arrays['modality'], arrays['model']

    def _damaged(self, what):
        raise ReIDError(f'{self.source}: {what}: a damaged features file')

    def _check_meta(self, meta):
        """The types of "meta"'s entries that the readers use, and a dataset this code knows."""
        if not isinstance(meta['dataset'], str) or meta['dataset'] not in DATASETS:
            self._damaged(f'"meta" names the dataset {meta["dataset"]!r}; expected one of {", ".join(DATASETS)}')
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
        if not isinstance(meta['trials'], list) or not meta['trials'] or not all(whole(t) for t in meta['trials']):
            self._damaged(f'"meta" "trials" is {meta["trials"]!r}; expected a non-empty list of trial numbers')
        if len(set(meta['trials'])) != len(meta['trials']):
            self._damaged(f'"meta" "trials" lists a trial twice ({meta["trials"]})')
        if not isinstance(meta['checkpoints'], list) or not all(isinstance(c, str) for c in meta['checkpoints']):
            self._damaged('"meta" "checkpoints" is not a list of paths')
        models = meta['trial_models']
        if not isinstance(models, list) or len(models) != len(meta['trials']) or \
                not all(whole(m) and 0 <= m < len(meta['checkpoints']) for m in models):
            self._damaged(f'"meta" "trial_models" is {models!r}; expected one index into "checkpoints" per trial')
        for key in ('img_h', 'img_w'):
            if not whole(meta[key]) or meta[key] < 1:
                self._damaged(f'"meta" "{key}" is {meta[key]!r}; expected a positive whole number')
        if not isinstance(meta['data_root'], str) or not isinstance(meta['llcm_pool_quirk'], bool):
            self._damaged('"meta" "data_root" is not a path or "llcm_pool_quirk" not true or false')

    def _check_arrays(self, arrays, names, trial_keys, meta):
        """Shapes, dtypes and ranges: one row per image, integer indices within range, one
        (rows, FEATURE_WIDTH) float matrix per feature, non-empty trials."""
        n = len(arrays['path']) if arrays['path'].ndim == 1 else -1
        if arrays['path'].dtype.kind != 'U' or n < 1:
            self._damaged(f'"path" is a {arrays["path"].dtype} array of shape {arrays["path"].shape}; expected one '
                          'image path (text) per row')
        for key in ('identity', 'camera', 'modality', 'model', *trial_keys):
            a = arrays[key]
            if a.ndim != 1 or a.dtype.kind not in 'iu':
                self._damaged(f'"{key}" is a {a.dtype} array of shape {a.shape}; expected a list of whole numbers')
        for key in ('identity', 'camera', 'modality', 'model'):
            if len(arrays[key]) != n:
                self._damaged(f'"{key}" has {len(arrays[key])} rows and "path" {n}; expected one per image')
        for key, allowed, what in (('modality', (int(Modal.VISIBLE), int(Modal.THERMAL)), 'the network branches'),
                                   ('model', range(len(meta['checkpoints'])), 'indices into "meta" "checkpoints"')):
            bad = sorted(set(np.unique(arrays[key]).tolist()) - set(allowed))
            if bad:
                self._damaged(f'"{key}" holds {bad[0]}; expected {what} ({", ".join(map(str, allowed))})')
        for key in names:
            a = arrays[key]
            if a.dtype.kind != 'f' or a.shape != (n, FEATURE_WIDTH):
                self._damaged(f'the features "{key}" are a {a.dtype} array of shape {a.shape}; expected ({n}, '
                              f'{FEATURE_WIDTH}) floats, one {FEATURE_WIDTH}-long vector per image')
        for t in meta['trials']:
            for side in ('query', 'gallery'):
                rows = arrays[f'{side}_{t}']
                if not rows.size:
                    self._damaged(f'the {side} of trial {t} is empty; expected its images\' rows')
                if rows.min() < 0 or rows.max() >= n:
                    self._damaged(f'the {side} of trial {t} names row {rows.min() if rows.min() < 0 else rows.max()}; '
                                  f'expected rows 0..{n - 1}')

    def trial(self, trial=None):
        """`trial`, or the file's first trial when None; refuses a trial the file does not hold."""
        if trial is None:
            return self.trials[0]
        if trial not in self.trials:
            raise ReIDError(f'trial {trial} is not in {self.source}; it holds trials '
                            f'{", ".join(map(str, self.trials))}')
        return trial

    def side(self, trial, side):
        """Row indices of a trial's 'query' or 'gallery', in test.py's order."""
        return self.arrays[f'{side}_{trial}']

    def rows(self, index):
        return {name: self.arrays[name][index].astype(np.float64) for name in self.names}

    def image_path(self, row, data_root=None):
        return os.path.join(data_root or self.meta['data_root'], str(self.path[row]))


class SavedBank:
    """The feature bank of a features file (features.Features): the ImageSets of `saved_problems`
    name rows of the file instead of image paths, and `get` reads those rows."""

    def __init__(self, features):
        self.features = features

    def get(self, image_set):
        return self.features.rows(np.asarray(image_set.paths, dtype=np.int64))


def saved_problems(features, trials):
    """`{trial: Problem}` and a SavedBank that score the trials of a features file exactly as the
    run that wrote it did: the same query and gallery rows in the same order, the same features."""
    quirk = bool(features.meta['llcm_pool_quirk'])
    cameras = dataset_info(features.dataset).has_cameras

    def image_set(trial, side):
        rows = features.side(trial, side)
        modal = {int(m) for m in features.modality[rows]}
        if len(modal) != 1:
            raise ReIDError(f'{features.source}: the {side} of trial {trial} mixes network branches: a damaged file')
        return ImageSet(rows.tolist(), features.identity[rows], features.camera[rows] if cameras else None, modal.pop())

    problems = {t: problem(features.dataset, image_set(t, 'query'), image_set(t, 'gallery'), quirk) for t in trials}
    return problems, SavedBank(features)
