"""The results file of `test.py --results FILE`: JSON, written atomically by test.py (`write_results`),
read by tables.py and visualize.py (`read_results`, `load_json`). Values are fractions in [0, 1].

    {"dataset": "sysu" | "regdb" | "llcm",
     "mode": "all" | "indoor" for SYSU-MM01, null for RegDB and LLCM,
     "direction": e.g. "infrared -> visible" (the modality of the queries, then the gallery's),
     "tvsearch", "protocol", "flip", "gallery", "shots": the test settings,
     "trials": [...],
     "mean": {score: {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}}, "std": {the same keys},
     "per_trial": [{"trial": t, score: {...}}, ...],
     "cmc": {"mean": {score: [ranks 1..20]}, "per_trial": [{"trial": t, score: [20 values]}, ...]},
     "per_camera": {score: {camera: {"rank1", "mAP", "mINP", "queries", "trials"}}} or null (RegDB),
     "rerank": {"k1", "k2", "lambda_value"} or null,
     "trained_on": [{"checkpoint", "dataset", "trial", "img_h", "img_w", "epoch"}] or null,
     "checkpoints": [{"path", "trials", "args", "sha256", "environment"}] (sha256 of the checkpoint file or
                    of a model folder's model.safetensors, null for exported files; environment: the stamp the
                    checkpoint stores, or null),
     "dataset_copy": the test set copy against the published one (dataset_census.check_copy), null with
                     --from-features,
     "environment": the environment stamp of this run (environment_stamp.stamp),
     "warnings": [...] (only for an incomplete test set),
     "embedding": {"images", "seconds", "seconds_per_image", "device"} or null (--from-features),
     "corruption": (only with --corrupt) {"setting": {"corruptions", "severities", "seed", "side",
         "applied", "versions"}, "img_size": [h, w], "complete": bool,
         "cells": {"fog/3" | "mix/1-5": {"corruption", "severity", "mean", "std", "per_trial", "images",
                                        "seconds"}},
         "summary": {"cells", "mean": {score: {"rank1", "mAP", "mINP"}}, "relative_drop": {the same}}
                    (once complete)}}

Scores are named as the release prints them (`scoring.SCORES`; a network without the middle modality
has `scoring.ORIGINAL_SCORES`). A CMC shorter than 20 (a small gallery) carries its last value forward.
The file grows keys, never changes old ones: "embedding" and "corruption" came later. A corruption
sweep rewrites the file after every cell ("complete" false until the last), so an interrupted one
resumes from it.

Readers check a file before using it (`check_report`): its structure level by level, every score a
finite fraction within [0, 1] (Rank-k, mAP, mINP, their spreads, the CMC curves, per camera), and a
nesting depth that no results file reaches; a file that fails is one line naming the key.
"""
import json
import math

from data_manager import DATASETS, dataset_info
from ifalnet.atomic import atomic_write
from ifalnet.scoring import METRIC_KEYS, ORIGINAL_SCORES, SCORES
from utils import ReIDError

# A results file nests six levels deep (checkpoints[0].args.<a list argument>); deeper is not one.
MAX_DEPTH = 16
EXPECTED = 'a results file of test.py --results'


def results_report(setting, trials, direction, mean, std, per_trial, cmc, per_camera, rerank, gaps=()):
    """The results file's content. `setting`: test.py's dataset, mode, tvsearch, protocol, flip, gallery,
    shots, trained_on, checkpoints, dataset_copy, environment and embedding (`embedding_report`, or
    None); `rerank` a scoring.Rerank or None; `gaps` the lines of an incomplete test set (partial_sets.py)."""
    dataset = setting['dataset']
    # "mode" (SYSU-MM01's gallery cameras) is kept for every dataset, as the file format has it, and is
    # null where it means nothing (RegDB, LLCM); the direction is always written.
    return {'dataset': dataset, 'mode': setting['mode'] if dataset_info(dataset).modes else None,
            'direction': direction, 'tvsearch': setting['tvsearch'],
            'protocol': setting['protocol'], 'flip': setting['flip'], 'gallery': setting['gallery'],
            'shots': setting['shots'], 'trials': trials, 'mean': mean, 'std': std, 'per_trial': per_trial,
            'cmc': cmc, 'per_camera': per_camera, 'rerank': rerank._asdict() if rerank else None,
            'trained_on': setting['trained_on'], 'checkpoints': setting['checkpoints'],
            'dataset_copy': setting['dataset_copy'], 'environment': setting['environment'],
            **({'warnings': list(gaps)} if gaps else {}), 'embedding': setting.get('embedding')}


def embedding_report(images, seconds, device):
    """The "embedding" entry: the images embedded, in how many seconds (decoding, resizing and the
    network, through the data loader) and per image, on which device."""
    return {'images': images, 'seconds': seconds, 'seconds_per_image': seconds / images if images else None,
            'device': str(device)}


def corruption_report(setting, img_size, cells, summary=None):
    """The "corruption" entry of a sweep (ifalnet/corruption_sweep.py): its setting, the test size,
    the cells done so far and, once every cell is done, the summary."""
    return {'setting': setting, 'img_size': list(img_size), 'complete': summary is not None, 'cells': cells,
            **({'summary': summary} if summary is not None else {})}


def write_results(path, report):
    """The report as indented JSON, written atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')


def load_json(path):
    """The parsed JSON of a file that should be a results file of test.py --results (any content)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReIDError(f'results file not found: {path}') from None
    except (OSError, ValueError) as err:
        raise ReIDError(f'cannot read {path} as JSON ({err}); expected {EXPECTED}') from None
    except RecursionError:
        raise ReIDError(f'cannot read {path}: its JSON is nested too deeply; expected {EXPECTED}') from None


def _depth(value):
    """How deeply lists and objects nest in parsed JSON (0 for a number or a string), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_DEPTH:
                return deepest
            todo += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]
    return deepest


def _shown(value):
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + '...'


class _Checker:
    """`check_report`'s walk over one file: `fail` names the key, its value and what was expected."""

    def __init__(self, path, report):
        self.path, self.report = path, report

    def fail(self, key, value, expected):
        raise ReIDError(f'{self.path}: {key} is {_shown(value)}; expected {expected} ({EXPECTED})')

    def kind(self, key, value, kind, expected, optional=True):
        """`value` if it is of `kind` (a bool is no int), or None where `optional`."""
        if value is None and optional:
            return value
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        self.fail(key, value, expected)

    def number(self, key, value, low=0.0, high=1.0, expected='a fraction within [0, 1]'):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            self.fail(key, value, expected)
        return value

    def scores(self, key, value):
        """{metric: fraction} of one score."""
        self.kind(key, value, dict, 'an object of Rank-1 to mINP', optional=False)
        for metric in (*METRIC_KEYS, *(m for m in value if m not in METRIC_KEYS)):
            self.number(f'{key}.{metric}', value.get(metric))

    def curve(self, key, value):
        self.kind(key, value, list, 'a list of fractions (a CMC curve)', optional=False)
        for k, v in enumerate(value):
            self.number(f'{key}[{k}]', v)

    def cameras(self, key, value):
        self.kind(key, value, dict, 'an object of cameras', optional=False)
        for camera, scores in value.items():
            where = f'{key}.{camera}'
            self.kind(where, scores, dict, 'an object of per-camera scores', optional=False)
            for metric in ('rank1', 'mAP', 'mINP'):
                self.number(f'{where}.{metric}', scores.get(metric))
            self.number(f'{where}.queries', scores.get('queries'), 0, math.inf, 'a number of queries')
            self.number(f'{where}.trials', scores.get('trials'), 1, math.inf, 'a number of trials')

    def by_score(self, key, value, each):
        """{score: each(...)}."""
        for name, v in (self.kind(key, value, dict, 'an object of scores') or {}).items():
            each(f'{key}.{name}', v)

    def trial_entries(self, key, value, each):
        """[{"trial": t, score: each(...)}, ...]."""
        for k, entry in enumerate(self.kind(key, value, list, 'a list of per-trial objects') or ()):
            self.kind(f'{key}[{k}]', entry, dict, 'an object of one trial', optional=False)
            self.kind(f'{key}[{k}].trial', entry.get('trial'), int, 'a trial number', optional=False)
            for name, v in entry.items():
                if name != 'trial':
                    each(f'{key}[{k}].{name}', v)

    def objects(self, key, value):
        for k, entry in enumerate(self.kind(key, value, list, 'a list of objects') or ()):
            self.kind(f'{key}[{k}]', entry, dict, 'an object', optional=False)

    def check(self):
        r = self.report
        if _depth(r) > MAX_DEPTH:
            raise ReIDError(f'{self.path} nests lists and objects more than {MAX_DEPTH} levels deep; '
                            f'expected {EXPECTED}')
        if not isinstance(r.get('dataset'), str) or r['dataset'] not in DATASETS:
            self.fail('dataset', r.get('dataset'), f'one of {", ".join(DATASETS)}')
        for key in ('mode', 'direction', 'protocol', 'gallery'):
            self.kind(key, r.get(key), str, 'a string or null')
        for key in ('tvsearch', 'flip'):
            self.kind(key, r.get(key), bool, 'true, false or null')
        if r.get('shots') is not None:
            self.kind('shots', r['shots'], int, 'a whole number of gallery images')
            self.number('shots', r['shots'], 1, math.inf, 'a number of gallery images')
        for k, t in enumerate(self.kind('trials', r.get('trials'), list, 'a list of trial numbers') or ()):
            self.kind(f'trials[{k}]', t, int, 'a trial number', optional=False)
        self.trial_entries('per_trial', r.get('per_trial'), self.scores)
        self.by_score('mean', r.get('mean'), self.scores)
        self.by_score('std', r.get('std'), self.scores)
        cmc = self.kind('cmc', r.get('cmc'), dict, 'an object of CMC curves') or {}
        self.by_score('cmc.mean', cmc.get('mean'), self.curve)
        self.trial_entries('cmc.per_trial', cmc.get('per_trial'), self.curve)
        self.by_score('per_camera', r.get('per_camera'), self.cameras)
        self.kind('rerank', r.get('rerank'), dict, 'an object of re-ranking parameters or null')
        self.objects('trained_on', r.get('trained_on'))
        self.objects('checkpoints', r.get('checkpoints'))
        for k, c in enumerate(r.get('checkpoints') or ()):
            self.kind(f'checkpoints[{k}].args', c.get('args'), dict, 'an object of training arguments or null')
        for k, line in enumerate(self.kind('warnings', r.get('warnings'), list, 'a list of lines') or ()):
            self.kind(f'warnings[{k}]', line, str, 'a line of text', optional=False)


def check_report(path, report):
    """Refuse, with one line naming the key, parsed JSON that is not a results file of test.py: the wrong
    type at any level, a score that is not a finite fraction within [0, 1], nesting too deep.
    Keys that older files lack may be absent."""
    if not isinstance(report, dict):
        raise ReIDError(f'{path} is not {EXPECTED} (expected a JSON object, found {type(report).__name__})')
    _Checker(path, report).check()
    return report


def read_results(path, score='ALL'):
    """A results file of test.py --results, checked for the scores of `score`: the parsed JSON. A
    network without the middle modality has only `ORIGINAL_SCORES`; another score is refused."""
    report = load_json(path)
    if not isinstance(report, dict) or not isinstance(report.get('dataset'), str) or \
            report['dataset'] not in DATASETS or \
            not isinstance(report.get('per_trial'), list) or not report['per_trial'] or \
            not all(isinstance(entry, dict) for entry in report['per_trial']):
        raise ReIDError(f'{path} is not a results file of test.py --results (expected "dataset" and a non-empty '
                        '"per_trial" list)')
    if not any(score in entry for entry in report['per_trial']):
        held = [name for name in SCORES if name in report['per_trial'][0]]
        raise ReIDError(f'{path} has no {score} scores (it has {", ".join(held) or "none"}; a network without the '
                        f'middle modality has {" and ".join(ORIGINAL_SCORES)} only): choose another --score')
    for entry in report['per_trial']:
        scores = entry.get(score)
        if not isinstance(scores, dict) or any(k not in scores for k in METRIC_KEYS):
            raise ReIDError(f'{path}: a "per_trial" entry lacks the {score} scores ({", ".join(METRIC_KEYS)}); '
                            'expected a results file of test.py --results')
    return check_report(path, report)
