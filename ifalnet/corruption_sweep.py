"""A test under corruption (test.py --corrupt): the cells of a sweep, each embedded and scored, a sweep
that resumes, and its summary.

A cell is one setting, a corruption at a severity or `mix` (ifalnet/corruptions.py). For each cell the
visible test images, whatever their role (SYSU-MM01's gallery, RegDB's queries by default), are
embedded corrupted, once each whatever the trials share, and the other side's rows come from the
clean run (`feature_bank.embed_problems(..., reuse=)`); the trials are scored as the clean ones.
`run_cells` calls back after each cell, so test.py writes the results file cell by cell; `done_cells`
reads back the cells of an interrupted sweep with the same settings. `summarise_cells` gives the
benchmark's headline: the mean over every cell and its relative drop from the clean scores.
"""
import time
from collections import namedtuple

import numpy as np

from ifalnet.corruptions import MIX, Corruption, warm_up
from ifalnet.feature_bank import embed_problems
from ifalnet.scoring import mean_scores, score_trials, std_scores, summarise_trials
from model import Modal
from utils import ReIDError

# One model of the clean run: the network, its trials' problems ({trial: Problem}), its clean
# FeatureBank, and the keyword arguments `embed_problems` embedded with (size, batch, format, flip).
Model = namedtuple('Model', 'net problems bank options')

SIDE = 'visible'
ORDER = 'after the LANCZOS resize to the test size, before normalisation'
METRICS = ('rank1', 'mAP', 'mINP')


def cells(names, severities, seed, root):
    """The Corruption of every cell, corruption by corruption, severity by severity; for ('mix',)
    one cell per severity, or one with the severity drawn per image when all five are asked for."""
    if names == (MIX,):
        return [Corruption(MIX, None, seed, root)] if len(severities) == 5 else \
            [Corruption(MIX, s, seed, root) for s in severities]
    return [Corruption(name, s, seed, root) for name in names for s in severities]


def sweep_setting(names, severities, seed, versions):
    """The results file's `corruption.setting`: what the cells are and how the images were made."""
    return {'corruptions': list(names), 'severities': list(severities), 'seed': seed, 'side': SIDE,
            'applied': ORDER, 'versions': versions}


def resume_key(report, early=False):
    """What must be equal for a sweep to resume from a results file: the test's settings, trials,
    re-ranking, the corruption setting less the library versions, and (unless `early`: before the
    checkpoints are loaded) the checkpoints' paths and the test size."""
    key = {k: report.get(k) for k in ('dataset', 'mode', 'tvsearch', 'protocol', 'flip', 'gallery', 'shots',
                                      'trials', 'rerank')}
    corruption = report.get('corruption') if isinstance(report.get('corruption'), dict) else {}
    key['corruption'] = {k: v for k, v in corruption.get('setting', {}).items() if k != 'versions'}
    if not early:
        key['checkpoints'] = [(c.get('path'), c.get('trials')) for c in report.get('checkpoints') or ()]
        key['img_size'] = corruption.get('img_size')
    return key


def done_cells(previous, report, path, early=False):
    """The finished cells of `previous` (a results file's content, or None) if it is an interrupted or
    finished sweep with the settings of `report` (the new run's file so far; `early` as for
    `resume_key`), else {} for a file that is no sweep; a sweep with other settings is refused, so
    that an interrupted one is not lost."""
    if not isinstance(previous, dict) or 'corruption' not in previous:
        return {}
    old, new = resume_key(previous, early), resume_key(report, early)
    differ = [k for k in new if k != 'corruption' and old.get(k) != new[k]]
    differ += [f'corruption {k}' for k in new['corruption'] if old['corruption'].get(k) != new['corruption'][k]]
    if differ:
        raise ReIDError(f'--results {path} holds a corruption sweep with other settings ({", ".join(differ)} differ); '
                        'give another file to start a new sweep, or the same flags to resume that one')
    return dict(previous['corruption'].get('cells') or {})


def check_clean_scores(previous, mean, path):
    """A resumed sweep's clean scores must be this run's, to the last digit (same checkpoint, data and
    machine's arithmetic); else its cells belong to another model."""
    if previous and previous.get('corruption', {}).get('cells') and previous.get('mean') != mean:
        raise ReIDError(f'--results {path} holds a sweep whose clean scores differ from this run\'s (another '
                        'checkpoint, data set or machine?): give another file to start a new sweep')


def run_cells(models, todo, dataset, rerank=None, on_cell=None):
    """Embed and score each Corruption of `todo` with every Model; returns {label: cell} and calls
    `on_cell(label, cell, seconds_left)` after each, where a cell is {"corruption", "severity",
    "mean", "std", "per_trial", "images", "seconds"} (images: the corrupted images embedded)."""
    out, start = {}, time.perf_counter()
    if any(c.name in ('glass_blur', MIX) for c in todo) and any(m.options['workers'] for m in models):
        warm_up()
    for k, corruption in enumerate(todo):
        results, images, seconds = [], 0, 0.0
        for model in models:
            bank = embed_problems(model.net, dataset, model.problems, model.bank.device, reuse=model.bank,
                                  alter={Modal.VISIBLE: corruption}, label=corruption.label, **model.options)
            results += score_trials(model.problems, bank, rerank)
            images, seconds = images + bank.images, seconds + bank.seconds
        per_trial = summarise_trials(results)
        cell = {'corruption': corruption.name, 'severity': corruption.severity or '1-5',
                'mean': mean_scores(per_trial), 'std': std_scores(per_trial), 'per_trial': per_trial,
                'images': images, 'seconds': seconds}
        out[corruption.label] = cell
        left = (time.perf_counter() - start) / (k + 1) * (len(todo) - k - 1)
        if on_cell is not None:
            on_cell(corruption.label, cell, left)
    return out


def summarise_cells(cells_done, clean):
    """{"mean": the mean over all cells of every score's Rank-1, mAP and mINP, "relative_drop":
    (clean - that mean) / clean} (the benchmark's headline; a clean value of 0 gives null)."""
    runs = list(cells_done.values())
    names = [name for name in clean if all(name in cell['mean'] for cell in runs)]
    mean = {name: {m: float(np.mean([cell['mean'][name][m] for cell in runs])) for m in METRICS} for name in names}
    drop = {name: {m: (clean[name][m] - mean[name][m]) / clean[name][m] if clean[name][m] else None for m in METRICS}
            for name in names}
    return {'cells': len(runs), 'mean': mean, 'relative_drop': drop}
