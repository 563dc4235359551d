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
     "warnings": [...] (only for an incomplete test set)}

Scores are named as the release prints them (`scoring.SCORES`; a network without the middle modality
has `scoring.ORIGINAL_SCORES`). A CMC shorter than 20 (a small gallery) carries its last value forward.
"""
import json

from data_manager import DATASETS, dataset_info
from ifalnet.atomic import atomic_write
from ifalnet.scoring import METRIC_KEYS, ORIGINAL_SCORES, SCORES
from utils import ReIDError


def results_report(setting, trials, direction, mean, std, per_trial, cmc, per_camera, rerank, gaps=()):
    """The results file's content. `setting`: test.py's dataset, mode, tvsearch, protocol, flip, gallery,
    shots, trained_on, checkpoints, dataset_copy and environment; `rerank` a scoring.Rerank or None;
    `gaps` the lines of an incomplete test set (partial_sets.py)."""
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
            **({'warnings': list(gaps)} if gaps else {})}


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
        raise ReIDError(f'cannot read {path} as JSON ({err}); expected a results file of test.py --results') from None


def read_results(path, score='ALL'):
    """A results file of test.py --results, checked for the scores of `score`: the parsed JSON. A
    network without the middle modality has only `ORIGINAL_SCORES`; another score is refused."""
    report = load_json(path)
    if not isinstance(report, dict) or report.get('dataset') not in DATASETS or \
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
        if not isinstance(scores, dict) or any(not isinstance(scores.get(k), (int, float)) for k in METRIC_KEYS):
            raise ReIDError(f'{path}: a "per_trial" entry lacks the {score} scores ({", ".join(METRIC_KEYS)}); '
                            'expected a results file of test.py --results')
    return report
