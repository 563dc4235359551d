"""Scoring test features as the release does: the six similarity matrices it reports (two, `ORIGINAL_SCORES`,
for a network without the middle modality), the query- and gallery-side vectors behind each
(`score_vectors`), k-reciprocal re-ranking of a score (`rerank_distances`, with rerank.py), scoring
per trial (`score_trials`) and per query camera, the collapse check (`feature_spread`,
`collapse_warning`), and the summaries the results file holds (`summarise`, `summarise_trials`,
`mean_scores`, `std_scores`, `camera_report`, `cmc_report`). What test.py prints of them is in
report_text.py.
"""
import time
from collections import namedtuple

import numpy as np

from utils import loud

SCORES = ('VIS-IR FC', 'VIS-MR FC', 'MIS-IR FC', 'MIS-MR FC', 'ALL FC', 'ALL')

# The scores of a network without the middle modality (--no-middle): ALL = bn + pool of the originals.
ORIGINAL_SCORES = ('VIS-IR FC', 'ALL')

RANKS = (1, 5, 10, 20)

# The values of one score (`summarise`), in the order the tables print them, and their column headers.
METRIC_KEYS = tuple(f'rank{r}' for r in RANKS) + ('mAP', 'mINP')

METRIC_HEADERS = tuple(f'Rank-{r}' for r in RANKS) + ('mAP', 'mINP')

MAX_RANK = 20   # length of the CMC curves in the results file

# k-reciprocal re-ranking's parameters (see rerank.py); the defaults of the paper, fast-reid and torchreid.
Rerank = namedtuple('Rerank', 'k1 k2 lambda_value', defaults=(20, 6, 0.3))


def has_middle(scores):
    """Whether a set of scores (or features) is a middle-modality network's: it has the middle ones."""
    return 'VIS-MR FC' in scores or 'bn_mid' in scores


def present_scores(scores):
    """The names of SCORES that `scores` (any mapping by score name) holds, in SCORES' order."""
    return [name for name in SCORES if name in scores]


def score_similarities(q, g, llcm_pool_quirk=False):
    """The six similarity matrices the release reports, (num_query, num_gallery) each; for the
    features of a network without the middle modality the two that exist, VIS-IR FC and ALL (bn + pool
    of the originals; the LLCM quirk's four original terms are that one there)."""
    if not has_middle(q):
        bn = q['bn_ori'] @ g['bn_ori'].T
        return {'VIS-IR FC': bn, 'ALL': bn + q['pool_ori'] @ g['pool_ori'].T}
    terms = {f: [q[f'{kind}_ori'] @ g[f'{kind}_ori'].T, q[f'{kind}_ori'] @ g[f'{kind}_mid'].T,
                 q[f'{kind}_mid'] @ g[f'{kind}_ori'].T, q[f'{kind}_mid'] @ g[f'{kind}_mid'].T]
             for f, kind in (('bn', 'bn'), ('pool', 'pool'))}
    if llcm_pool_quirk:
        # The release's LLCM default adds pool(original) . pool(original) four times instead of
        # the four original/middle combinations.
        terms['pool'] = [terms['pool'][0]] * 4
    sims = dict(zip(SCORES[:4], terms['bn']))
    sims['ALL FC'] = sum(terms['bn'])
    sims['ALL'] = sims['ALL FC'] + sum(terms['pool'])
    return sims

# Below this spread (see `feature_spread`) the network gives every image about the same features. A
# freshly initialised one measures 0.03-0.2 on the synthetic data, trained ones more; the collapse
# of SGD --lr 0.1 from scratch measured about 1e-4, and 0 (dead ReLUs) in a short run at a higher lr.
COLLAPSE_SPREAD = 1e-3


def feature_spread(features):
    """How much the (unit-length) features of a set of images differ: the RMS distance of the rows
    from their mean, for each kind of feature in `features` ({name: (N, D)}), the largest kind's."""
    return max(float(np.sqrt(((f - f.mean(0)) ** 2).sum(1).mean())) for f in features.values())


def collapse_warning(spread):
    """The loud message for a network whose features barely differ between images."""
    return loud(f'WARNING: the model gives every image nearly the same features (spread {spread:.1e}, '
                f'below {COLLAPSE_SPREAD:.0e};\nan untrained network gives about 0.03-0.2): it has collapsed, and '
                'the scores below are meaningless.\nLikely cause: a learning rate too high for training without '
                "ImageNet weights. The release's SGD --lr 0.1\nexpects --pretrained imagenet; from scratch, use a "
                'smaller --lr, or --optim adam --lr 0.02 as demo.py does.')


def summarise(cmc, mAP, mINP):
    # A gallery smaller than 20 gives a shorter CMC (the release would fail here); the curve is flat
    # after its end, so Rank-k there is its last value.
    return {**{f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}, 'mAP': float(mAP),
            'mINP': float(mINP)}


def score_vectors(q, g, llcm_pool_quirk=False):
    """For each score, the query-side and gallery-side vectors whose dot products are its
    similarities (`score_similarities`): {name: (query vectors, gallery vectors)}. `VIS-IR FC`: bn
    original on both sides; `VIS-MR FC`: query bn original, gallery bn middle; `MIS-*` likewise with
    the query's bn middle; `ALL FC`: bn original + bn middle on both sides; `ALL`: that bn sum and the
    pool sum (the LLCM quirk: twice the pool original) concatenated. Without the middle modality:
    `VIS-IR FC` and `ALL` = bn original and pool original concatenated."""
    if not has_middle(q):
        both = lambda f: np.concatenate([f['bn_ori'], f['pool_ori']], axis=1)
        return {'VIS-IR FC': (q['bn_ori'], g['bn_ori']), 'ALL': (both(q), both(g))}
    def sides(f):
        bn = f['bn_ori'] + f['bn_mid']
        pool = 2 * f['pool_ori'] if llcm_pool_quirk else f['pool_ori'] + f['pool_mid']
        return {'VIS': f['bn_ori'], 'MIS': f['bn_mid'], 'ALL FC': bn, 'ALL': np.concatenate([bn, pool], axis=1)}
    qs, gs = sides(q), sides(g)
    vectors = {f'{a}-{b} FC': (qs[a], gs[c]) for a in ('VIS', 'MIS') for b, c in (('IR', 'VIS'), ('MR', 'MIS'))}
    return {**vectors, 'ALL FC': (qs['ALL FC'], gs['ALL FC']), 'ALL': (qs['ALL'], gs['ALL'])}


def rerank_distances(q, g, llcm_pool_quirk, rerank):
    """{score name: re-ranked (num_query, num_gallery) distance}: each score's query-gallery,
    query-query and gallery-gallery Euclidean distances of its vectors (`score_vectors`) through
    k-reciprocal re-ranking with `rerank` (a Rerank)."""
    from ifalnet.rerank import euclidean, re_ranking   # scipy, only for re-ranking (tables.py imports this module)
    return {name: re_ranking(euclidean(qv, gv), euclidean(qv, qv), euclidean(gv, gv), *rerank)
            for name, (qv, gv) in score_vectors(q, g, llcm_pool_quirk).items()}


def matched_queries(problem):
    """Which queries have at least one true match among the gallery images they see."""
    q, g = problem.query, problem.gallery
    same = np.asarray(q.ids)[:, None] == np.asarray(g.ids)[None]
    if problem.removal is not None:
        same &= ~problem.removal(same, np.asarray(q.cams)[:, None], np.asarray(g.cams)[None])
    return same.any(axis=1)


def camera_scores(problem, distances):
    """{score name: {query camera: (cmc, mAP, mINP, queries with a match)}} of one trial; a camera
    none of whose queries has a match is left out."""
    cams, matched = np.asarray(problem.query.cams), matched_queries(problem)
    out = {name: {} for name in distances}
    for camera in np.unique(cams):
        mine = cams == camera
        if not matched[mine].any():
            continue
        subset = problem.query._replace(paths=[p for p, m in zip(problem.query.paths, mine) if m],
                                        ids=np.asarray(problem.query.ids)[mine], cams=cams[mine])
        for name, dist in distances.items():
            out[name][int(camera)] = (*problem.metric(dist[mine], subset, problem.gallery), int(matched[mine].sum()))
    return out


def score_trials(problems, bank, rerank=None, by_camera=None):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})`; warns when the features collapsed.
    `rerank` (a Rerank): score k-reciprocal re-ranked distances instead of the similarities. A dict
    given as `by_camera` receives, for datasets with cameras, `{trial: camera_scores(...)}`."""
    results, spread = [], np.inf
    for trial, pr in problems.items():
        q, g = bank.get(pr.query), bank.get(pr.gallery)
        spread = min(spread, feature_spread(q), feature_spread(g))
        if rerank is None:
            distances = {name: -sim for name, sim in score_similarities(q, g, pr.llcm_pool_quirk).items()}
        else:
            start = time.perf_counter()
            distances = rerank_distances(q, g, pr.llcm_pool_quirk, rerank)
            print(f'  re-ranked trial {trial} ({len(pr.query.paths)} x {len(pr.gallery.paths)}, k1 {rerank.k1}, '
                  f'k2 {rerank.k2}, lambda {rerank.lambda_value}) in {time.perf_counter() - start:.1f}s', flush=True)
        results.append((trial, {name: pr.metric(distances[name], pr.query, pr.gallery)
                                for name in present_scores(distances)}))
        if by_camera is not None and pr.query.cams is not None:
            by_camera[trial] = camera_scores(pr, distances)
    if spread < COLLAPSE_SPREAD:
        print(collapse_warning(spread), flush=True)
    return results


def summarise_trials(results):
    """`evaluate`'s output as the results file's per-trial entries."""
    return [{'trial': trial, **{name: summarise(*raw[name]) for name in present_scores(raw)}} for trial, raw in results]


def cmc_curve(cmc):
    """Ranks 1..MAX_RANK; a shorter CMC (a gallery under 20) carries its last value forward, as
    `summarise` does."""
    return [float(cmc[min(r, len(cmc)) - 1]) for r in range(1, MAX_RANK + 1)]


def cmc_report(results):
    """The results file's "cmc" entry: every score's CMC curve per trial and its mean over trials."""
    names = present_scores(results[0][1])
    per_trial = [{'trial': trial, **{name: cmc_curve(raw[name][0]) for name in names}} for trial, raw in results]
    mean = {name: [float(np.mean([r[name][k] for r in per_trial])) for k in range(MAX_RANK)] for name in names}
    return {'mean': mean, 'per_trial': per_trial}


def mean_scores(per_trial, reduce=np.mean):
    return {name: {k: float(reduce([r[name][k] for r in per_trial])) for k in per_trial[0][name]}
            for name in present_scores(per_trial[0])}


def std_scores(per_trial):
    """The standard deviation over trials of every value of `mean_scores` (numpy's, ddof 0)."""
    return mean_scores(per_trial, np.std)


def camera_report(by_camera):
    """The results file's "per_camera" entry from `score_trials`' `by_camera`: {score: {camera:
    {rank1, mAP, mINP, queries, trials}}}, each the mean over the trials in which the camera had a
    query with a match (queries: those queries, the mean count)."""
    report = {}
    first = next(iter(by_camera.values()), {})
    for name in present_scores(first):
        cameras = sorted({c for scores in by_camera.values() for c in scores[name]})
        report[name] = {}
        for camera in cameras:
            runs = [scores[name][camera] for scores in by_camera.values() if camera in scores[name]]
            report[name][str(camera)] = {'rank1': float(np.mean([r[0][0] for r in runs])),
                                         'mAP': float(np.mean([r[1] for r in runs])),
                                         'mINP': float(np.mean([r[2] for r in runs])),
                                         'queries': float(np.mean([r[3] for r in runs])), 'trials': len(runs)}
    return report
