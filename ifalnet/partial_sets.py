"""Partial test sets: what a copy of a dataset's test set lacks, found before anything is embedded.

Scores of a test set with a camera folder or an identity's images missing cannot be compared with
anyone's. `test_set_gaps` counts what the test problems of the requested trials found against the
dataset's test identity list and its layout, and returns one line per kind of gap:
- a camera folder of the protocol that does not exist (SYSU-MM01, LLCM);
- test identities with no query image, or no gallery image in the protocol's cameras (SYSU-MM01
  indoor search checks the query side only: its gallery, cam1 and cam2, does not cover every test
  identity in the real dataset either);
- images listed in a RegDB index file that do not exist.
test.py prints them as a warning and stores them in the results file; `--strict` refuses them.
"""
import os

import data_manager as dm
from evaluation import build_problem


def _ids(values):
    return ', '.join(f'{int(v):04d}' for v in sorted(values)[:10]) + (f' and {len(values) - 10} more'
                                                                      if len(values) > 10 else '')


def camera_folders(dataset, mode):
    """The camera folders of a test protocol, relative to the root ('' for RegDB, which has none)."""
    if dataset == 'sysu':
        return dm.SYSU_IR_CAMERAS + dm.SYSU_RGB_CAMERAS[mode]
    if dataset == 'llcm':
        return dm.LLCM_CAMERAS[1] + dm.LLCM_CAMERAS[2]
    return ()


def listed_identities(dataset, root):
    """The test identities the dataset lists (SYSU-MM01, LLCM), or None (RegDB: each split's own)."""
    if dataset == 'regdb':
        return None
    layout, name = (dm.SYSU_LAYOUT, ('exp', 'test_id.txt')) if dataset == 'sysu' else (dm.LLCM_LAYOUT, ('idx', 'test_id.txt'))
    return {int(i) for i in dm.read_id_file(os.path.join(root, *name), layout)}


def test_set_gaps(dataset, data_path, trials, mode='all', tvsearch=False, protocol='release'):
    """One line per kind of gap in the test set of `trials` (empty when it is complete)."""
    root = os.path.normpath(os.fspath(data_path))
    missing_cameras = [c for c in camera_folders(dataset, mode) if not os.path.isdir(os.path.join(root, c))]
    problems = {t: build_problem(dataset, data_path, t, mode, tvsearch, protocol) for t in trials}
    listed = listed_identities(dataset, root)
    check_gallery = not (dataset == 'sysu' and mode == 'indoor')
    lacking, total = {'query': set(), 'gallery': set()}, set()
    for pr in problems.values():
        query, gallery = ({int(i) for i in side.ids} for side in (pr.query, pr.gallery))
        ids = listed if listed is not None else query | gallery
        total |= ids
        lacking['query'] |= ids - query
        lacking['gallery'] |= (ids - gallery) if check_gallery else set()
    gaps = [f'{len(missing_cameras)} camera folder(s) of the protocol missing: {", ".join(missing_cameras)}'] \
        if missing_cameras else []
    gaps += [f'{len(ids)} of {len(total)} test identities have no {side} image: {_ids(ids)}'
             for side, ids in lacking.items() if ids]
    absent = sorted({p for pr in problems.values() for side in (pr.query, pr.gallery) for p in side.paths
                     if not os.path.isfile(p)})
    if absent:
        gaps.append(f'{len(absent)} listed test image(s) do not exist: {", ".join(absent[:3])}'
                    + (f' and {len(absent) - 3} more' if len(absent) > 3 else ''))
    return gaps


def gaps_warning(gaps, data_path):
    rule = '!' * 100
    return (f'{rule}\nWARNING: the test set in {data_path} is incomplete, so these scores cannot be compared with '
            'published ones:\n' + '\n'.join(f'  {g}' for g in gaps) + '\n(--strict makes this an error)\n' + rule)
