"""A dataset copy against its published statistics: what the copy on disk holds, per split, modality
and camera, compared with the numbers of its paper and of the field (`data_manager.Published`), or,
for a synthetic copy, with what was made.

Several "cannot reproduce" reports of this field ended in a dataset copy with missing images or of
another version. `check_copy(dataset, root, split, trials)` counts the copy:

    {"identities": n, "images": {"visible": n, "infrared" or "thermal": n},
     "cameras": {camera folder: images} or null, "gallery": {"all": n, "indoor": n} (SYSU-MM01 test)}

- SYSU-MM01: the listed identities' image folders (training: train + val ids; test: test ids); a
  training run counts its prepared arrays instead (`prepared=True`: identities and images, no
  cameras), which is what it trains on. The gallery counts are the identity-camera folders with
  images, the size of the single-shot galleries.
- RegDB: the images of a split's index files that exist (one camera per modality).
- LLCM: the training index files' images that exist, per camera folder; the test identities'
  image folders.

and returns a report (recorded in checkpoints as "dataset_copy" and in results files):

    {"dataset", "split", "trials" (RegDB) or null, "synthetic": who made it ("synthetic.py", ...) or null,
     "reference": "published" or "as made", "matches": bool, "counts": counts (RegDB: per split),
     "differences": ["cam2 images: 17 (as made: 18; 1 fewer)", ...]}

`copy_line(report)` is what process_sysu.py, train.py and test.py print: one line when the copy
matches, a loud warning listing every difference when it does not (the run goes on);
`copy_sentence(report)` says it in a sentence for a model card. Every dataset ifalnet/toy_datasets.py
writes (synthetic.py, demo.py, the tests) carries a marker file with its counts as made
(`write_marker`), so it is reported as synthetic and checked against itself. Only the path below the
root is read; no image is opened.
"""
import json
import os

import numpy as np

import data_manager as dm
from utils import loud

# The marker files of synthetic datasets (toy_datasets.py writes them; synthetic.py's may be replaced by
# its --force, the demo's by the demo), and who made a dataset whose marker does not say.
SYNTHETIC_MARKER, DEMO_MARKER = '.synthetic', '.synthetic_demo'
MARKERS = {SYNTHETIC_MARKER: 'synthetic.py', DEMO_MARKER: 'demo.py'}
SPLITS = ('train', 'test')
# LLCM's training images, by modality: (index file, folder of its camera folders).
LLCM_TRAIN = {'visible': ('train_vis.txt', 'train_vis'), 'infrared': ('train_nir.txt', 'train_nir')}


def _folder_counts(root, ids, cameras):
    """{camera folder: {identity: images}} of the `ids` folders that hold files."""
    counts = {}
    for camera in cameras:
        per_id = {}
        for pid in ids:
            folder = os.path.join(root, camera, pid)
            if os.path.isdir(folder):
                n = sum(1 for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))
                if n:
                    per_id[pid] = n
        counts[camera] = per_id
    return counts


def _from_folders(root, ids, modalities, galleries=None):
    """Counts of the folders `camera/<id>/` of `ids`; `modalities` {word: camera folders};
    `galleries` {mode: camera folders} for the gallery sizes."""
    folders = _folder_counts(root, ids, [c for cameras in modalities.values() for c in cameras])
    counts = {'identities': len({pid for per_id in folders.values() for pid in per_id}),
              'images': {word: sum(sum(folders[c].values()) for c in cameras) for word, cameras in modalities.items()},
              'cameras': {camera: sum(per_id.values()) for camera, per_id in folders.items()}}
    if galleries:
        counts['gallery'] = {mode: sum(len(folders[c]) for c in cameras) for mode, cameras in galleries.items()}
    return counts


def _listed(root, index_files, layout):
    """{word: (existing paths, their labels)} of index files `{word: path relative to the root}`."""
    found = {}
    for word, name in index_files.items():
        paths, labels = dm.read_index_file(os.path.join(root, name), root, layout)
        exists = np.array([os.path.isfile(p) for p in paths], dtype=bool)
        found[word] = ([p for p, e in zip(paths, exists) if e], labels[exists])
    return found


def sysu_counts(root, split, prepared=False):
    if split == 'train' and prepared:   # what a training run reads: process_sysu.py's arrays
        labels = {word: np.load(os.path.join(root, f'train_{key}_resized_label.npy'))
                  for word, key in (('visible', 'rgb'), ('infrared', 'ir'))}
        return {'identities': len(np.union1d(*labels.values())),
                'images': {word: len(values) for word, values in labels.items()}, 'cameras': None}
    lists = ('train', 'val') if split == 'train' else ('test',)
    ids = [pid for name in lists for pid in dm.read_id_file(os.path.join(root, 'exp', f'{name}_id.txt'), dm.SYSU_LAYOUT)]
    galleries = dict(dm.SYSU_RGB_CAMERAS) if split == 'test' else None
    return _from_folders(root, ids, {'visible': dm.SYSU_RGB_CAMERAS['all'], 'infrared': dm.SYSU_IR_CAMERAS}, galleries)


def regdb_counts(root, split, trial):
    found = _listed(root, {word: os.path.join('idx', f'{split}_{word}_{trial}.txt') for word in ('visible', 'thermal')},
                    dm.REGDB_LAYOUT)
    return {'identities': len(np.union1d(*(labels for _, labels in found.values()))),
            'images': {word: len(paths) for word, (paths, _) in found.items()}, 'cameras': None}


def llcm_counts(root, split):
    if split == 'test':
        ids = dm.read_id_file(os.path.join(root, 'idx', 'test_id.txt'), dm.LLCM_LAYOUT)
        return _from_folders(root, ids, {'visible': dm.LLCM_CAMERAS[1], 'infrared': dm.LLCM_CAMERAS[2]})
    found = _listed(root, {word: os.path.join('idx', name) for word, (name, _) in LLCM_TRAIN.items()},
                    dm.LLCM_LAYOUT)
    cameras = {}
    for word, (paths, _) in found.items():
        for path in paths:
            camera = dm.parse_camera_and_id(path, root)[0]
            key = f'{LLCM_TRAIN[word][1]}/cam{camera}'
            cameras[key] = cameras.get(key, 0) + 1
    return {'identities': len(np.union1d(*(labels for _, labels in found.values()))),
            'images': {word: len(paths) for word, (paths, _) in found.items()}, 'cameras': dict(sorted(cameras.items()))}


def count_split(dataset, root, split, trial=None, prepared=False):
    """The counts of one split of the copy in `root` (RegDB: of split `trial`)."""
    if dataset == 'sysu':
        return sysu_counts(root, split, prepared)
    if dataset == 'regdb':
        return regdb_counts(root, split, trial)
    return llcm_counts(root, split)


def split_keys(dataset, root):
    """The keys of a marker's counts: 'train', 'test', and for RegDB 'train_<trial>', 'test_<trial>' of
    the splits whose index files are in `root` (a synthetic RegDB may have fewer than ten)."""
    info = dm.dataset_info(dataset)
    if info.split_trials:
        return [(split, trial, f'{split}_{trial}') for split in SPLITS for trial in info.trials
                if all(os.path.isfile(os.path.join(root, 'idx', f'{split}_{word}_{trial}.txt'))
                       for word in ('visible', 'thermal'))]
    return [(split, None, split) for split in SPLITS]


def write_marker(root, marker, made_by, dataset, settings=None):
    """The marker file of a synthetic dataset: its first line says who made it (`made_by`), the second
    holds it again with the counts of every split as made (JSON), which `check_copy` compares the copy
    with later, and the maker's `settings` where given (the demo keeps a dataset made with its own)."""
    root = dm.data_root(root, dm.dataset_info(dataset).layout)
    as_made = {key: count_split(dataset, root, split, trial) for split, trial, key in split_keys(dataset, root)}
    record = {'made_by': made_by, 'dataset': dataset, 'as_made': as_made}
    if settings is not None:
        record['settings'] = settings
    with open(os.path.join(root, marker), 'w') as f:
        f.write(f'made by {made_by} (--dataset {dataset})\n')
        f.write(json.dumps(record) + '\n')


def marker_record(path):
    """The record (JSON, second line) of marker file `path`: {} for an older marker (its first line
    alone) or a damaged one, None when there is no such file."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
        record = json.loads(lines[1]) if len(lines) > 1 else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_marker(root):
    """(who made it, {key: counts as made} or None) of the marker in `root`, or (None, None) when there
    is none. An older or damaged marker is synthetic, with counts unknown."""
    for marker, script in MARKERS.items():
        record = marker_record(os.path.join(root, marker))
        if record is not None:
            as_made = record.get('as_made')
            return record.get('made_by', script), as_made if isinstance(as_made, dict) else None
    return None, None


def _difference(what, found, expected, reference):
    if found == expected:
        return None
    change = found - expected
    return f'{what}: {found:,} ({reference}: {expected:,}; {abs(change):,} {"fewer" if change < 0 else "more"})'


def differences(counts, expected, reference):
    """One line per count of `counts` that differs from `expected` (a Published record, or counts as
    made); `reference` names the expected side ('published', 'as made')."""
    if isinstance(expected, dm.Published):
        expected = {'identities': expected.identities, 'images': expected.images, 'cameras': None,
                    'gallery': expected.gallery}
    lines = [_difference('identities', counts['identities'], expected['identities'], reference)]
    lines += [_difference(f'{word} images', counts['images'].get(word, 0), n, reference)
              for word, n in expected['images'].items()]
    if counts.get('cameras') is not None and expected.get('cameras') is not None:
        for camera in sorted(set(counts['cameras']) | set(expected['cameras'])):
            lines.append(_difference(f'{camera} images', counts['cameras'].get(camera, 0), expected['cameras'].get(camera, 0),
                                     reference))
    for mode, n in (expected.get('gallery') or {}).items():
        if counts.get('gallery') is not None:
            lines.append(_difference(f'{mode}-search gallery folders', counts['gallery'][mode], n, reference))
    return [line for line in lines if line]


def check_copy(dataset, data_path, split, trials=(None,), prepared=False):
    """The report (see the module) of split `split` of the copy in `data_path`; `trials` the RegDB
    splits to count (their counts and differences are kept per split)."""
    info = dm.dataset_info(dataset)
    root = dm.data_root(data_path, info.layout)
    script, as_made = read_marker(root)
    trials = list(trials) if info.split_trials else [None]
    counts, lines, unknown = {}, [], False
    for trial in trials:
        found = count_split(dataset, root, split, trial, prepared)
        key = split if trial is None else f'{split}_{trial}'
        if script:
            expected, reference = (as_made or {}).get(key), 'as made'
        else:
            expected, reference = info.published[split], 'published'
        prefix = f'split {trial}: ' if trial is not None and len(trials) > 1 else ''
        lines += [prefix + line for line in differences(found, expected, reference)] if expected else []
        unknown |= expected is None   # a marker that does not say what was made
        counts[key] = found
    return {'dataset': dataset, 'split': split, 'trials': trials if info.split_trials else None,
            'synthetic': script, 'reference': 'as made' if script else 'published',
            'matches': not lines and not unknown, 'prepared_arrays': bool(prepared),
            'counts': counts if info.split_trials else counts[split], 'differences': lines}


def _summary(dataset, counts):
    """'395 identities, 22,258 visible + 11,909 infrared images' (RegDB: of the first split)."""
    counts = counts if 'identities' in counts else next(iter(counts.values()))
    images = ' + '.join(f'{n:,} {word}' for word, n in counts['images'].items())
    text = f'{counts["identities"]:,} identities, {images} images'
    if counts.get('gallery'):
        text += ', single-shot galleries of ' + ' and '.join(f'{n:,} ({mode}-search)' for mode, n in counts['gallery'].items())
    return text


def _published_summary(published):
    images = ' + '.join(f'{n:,} {word}' for word, n in published.images.items())
    return f'{published.identities:,} identities, {images} images'


def split_name(report):
    info = dm.dataset_info(report['dataset'])
    name = 'training set' if report['split'] == 'train' else 'test set'
    if report['trials']:
        splits = ', '.join(map(str, report['trials']))
        name = f'{"split" if len(report["trials"]) == 1 else "splits"} {splits} {name}'
        name += ' (each)' if len(report['trials']) > 1 else ''
    return f'{info.name} {name}'


def copy_sentence(report):
    """The report in one sentence, for model cards: which copy a model was trained or tested on."""
    what = split_name(report)
    if report['synthetic']:
        state = 'as made' if report['matches'] else (
            'differing from what was made: ' + '; '.join(report['differences']) if report['differences'] else
            'whose marker does not say what was made')
        return f'a synthetic {what} (made by {report["synthetic"]}), {_summary(report["dataset"], report["counts"])}, {state}.'
    if report['matches']:
        return f'the {what} as published: {_summary(report["dataset"], report["counts"])}.'
    return f'a {what} that differs from the published one: ' + '; '.join(report['differences']) + '.'


def copy_line(report):
    """What the scripts print about a copy: one line when it matches its reference, else a loud
    warning with every difference (see the module)."""
    info = dm.dataset_info(report['dataset'])
    what = split_name(report)
    source = ' (its prepared arrays)' if report['prepared_arrays'] else ''
    if report['synthetic']:
        if report['matches']:
            return f'{what}{source}: synthetic (made by {report["synthetic"]}), {_summary(report["dataset"], report["counts"])}, as made'
        if not report['differences']:
            return (f'{what}{source}: synthetic (made by {report["synthetic"]}), '
                    f'{_summary(report["dataset"], report["counts"])}; its marker does not say what was made')
        return loud(f'WARNING: this synthetic {what}{source} differs from what {report["synthetic"]} made:\n'
                    + '\n'.join(f'  {line}' for line in report['differences']))
    published = info.published[report['split']]
    if report['matches']:
        return f'{what}{source} as published: {_summary(report["dataset"], report["counts"])}'
    cameras = report['counts'].get('cameras') if 'cameras' in report['counts'] else None
    per_camera = (['  per camera (not published; for comparison with other copies): '
                   + ', '.join(f'{c} {n:,}' for c, n in cameras.items())] if cameras else [])
    return loud(f'WARNING: this {what}{source} differs from the published one ({_published_summary(published)}; '
                f'{published.source}),\nso results on it cannot be compared with published ones:\n'
                + '\n'.join(f'  {line}' for line in report['differences']) + ('\n' if per_camera else '')
                + '\n'.join(per_camera))
