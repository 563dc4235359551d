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
from ifalnet.problems import build_problem
from utils import loud


def _ids(values):
    return ', '.join(f'{int(v):04d}' for v in sorted(values)[:10]) + (f' and {len(values) - 10} more'
                                                                      if len(values) > 10 else '')


def listed_identities(dataset, root):
    """The test identities the dataset lists (SYSU-MM01, LLCM), or None (RegDB: each split's own)."""
    info = dm.dataset_info(dataset)
    if info.test_id_file is None:
        return None
    return {int(i) for i in dm.read_id_file(os.path.join(root, info.test_id_file), info.layout)}


def test_set_gaps(dataset, data_path, trials, mode='all', tvsearch=False, protocol='release'):
    """One line per kind of gap in the test set of `trials` (empty when it is complete)."""
    root = os.path.normpath(os.fspath(data_path))
    missing_cameras = [c for c in dm.dataset_info(dataset).test_cameras(mode) if not os.path.isdir(os.path.join(root, c))]
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
    return loud(f'WARNING: the test set in {data_path} is incomplete, so these scores cannot be compared with '
                'published ones:\n' + '\n'.join(f'  {g}' for g in gaps) + '\n(--strict makes this an error)')
