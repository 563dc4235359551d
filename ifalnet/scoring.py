"""The evaluation engine: everything test.py computes, for test.py, train.py's validation,
visualize.py and bench.py alike.

- the test problem of each dataset, protocol and trial (`build_problem`: query and gallery image
  sets, the metric, the release's LLCM pool-feature quirk);
- the feature bank (`FeatureBank`: each test image embedded once, whatever the trials share),
  `embed`, which fills it for a set of trials, and `embed_problems`, for problems built elsewhere;
- the six similarity matrices the release reports (`score_similarities`; two, `ORIGINAL_SCORES`, for a
  network without the middle modality), the query- and
  gallery-side vectors behind each (`score_vectors`), k-reciprocal re-ranking of a score
  (`rerank_distances`, with rerank.py), scoring per trial (`score_trials`, `evaluate`), per query
  camera on request, with the collapse check (`feature_spread`, `collapse_warning`);
- the trials of a features file scored again (`saved_problems`, `SavedBank`);
- summaries (`summarise`, `summarise_trials`, `mean_scores`, `std_scores`, `camera_report`), the
  CMC report of the results file (`cmc_report`), the tables printed for them (`format_table`,
  `format_spread`, `format_cameras`) and what their titles and rows say (`trial_title`,
  `mean_title`, `rows_note`, `direction`);
- the network of a checkpoint, ready to evaluate (`load_model`).
"""
import time
from collections import namedtuple

import numpy as np
import torch
from torch.utils.data import DataLoader

import data_manager as dm
from checkpoint import (FULL_ARCHITECTURE, checkpoint_model_args, load_state, read_checkpoint, refuse_nonfinite,
                        trained_on, training_args)
from data_loader import TestData
from device import autocast, memory_format
from eval_metrics import eval_llcm, eval_regdb, eval_sysu, llcm_removal, sysu_removal
from interrupt import quiet_worker
from model import Modal, describe_architecture, embed_net
from rerank import euclidean, re_ranking
from utils import ReIDError, loud, plural

SCORES = ('VIS-IR FC', 'VIS-MR FC', 'MIS-IR FC', 'MIS-MR FC', 'ALL FC', 'ALL')
# The scores of a network without the middle modality (--no-middle): ALL = bn + pool of the originals.
ORIGINAL_SCORES = ('VIS-IR FC', 'ALL')
ORIGINAL_FEATURES = ('pool_ori', 'bn_ori')
NO_MIDDLE_NOTE = ('  (no middle modality: VIS-MR FC, MIS-IR FC, MIS-MR FC and ALL FC do not exist; '
                  'ALL = bn + pool of the original features)')
RANKS = (1, 5, 10, 20)
# The values of one score (`summarise`), in the order the tables print them, and their column headers.
METRIC_KEYS = tuple(f'rank{r}' for r in RANKS) + ('mAP', 'mINP')
METRIC_HEADERS = tuple(f'Rank-{r}' for r in RANKS) + ('mAP', 'mINP')
MAX_RANK = 20   # length of the CMC curves in the results file
DEFAULT_TRIALS = {'sysu': range(10), 'llcm': range(10), 'regdb': range(1, 11)}

# One side of a retrieval problem: image paths, identities, cameras (None for RegDB), and the
# network branch the images go through.
ImageSet = namedtuple('ImageSet', 'paths ids cams modal')
# The test problem of one trial: query and gallery sets, the metric, whether the release's LLCM
# pool-feature term is used (see `score_similarities`), and the metric's removal rule (which
# gallery images a query does not see; None: all are seen).
Problem = namedtuple('Problem', 'query gallery metric llcm_pool_quirk removal')
# k-reciprocal re-ranking's parameters (see rerank.py); the defaults of the paper, fast-reid and torchreid.
Rerank = namedtuple('Rerank', 'k1 k2 lambda_value', defaults=(20, 6, 0.3))


# Each dataset's metric, called with (distmat, query ImageSet, gallery ImageSet), and removal rule.
METRICS = {'sysu': lambda d, q, g: eval_sysu(d, q.ids, g.ids, q.cams, g.cams),
           'llcm': lambda d, q, g: eval_llcm(d, q.ids, g.ids, q.cams, g.cams),
           'regdb': lambda d, q, g: eval_regdb(d, q.ids, g.ids)}
REMOVALS = {'sysu': sysu_removal, 'llcm': llcm_removal, 'regdb': None}


def regdb_problem(data_path, trial, tvsearch):
    visible = ImageSet(*dm.process_test_regdb(data_path, trial, 'visible'), None, Modal.VISIBLE)
    thermal = ImageSet(*dm.process_test_regdb(data_path, trial, 'thermal'), None, Modal.THERMAL)
    # The release's RegDB branch ranks visible queries against the thermal gallery (and its
    # --tvsearch cannot be switched off); that is our default, True asks for thermal -> visible.
    query, gallery = (thermal, visible) if tvsearch else (visible, thermal)
    return Problem(query, gallery, METRICS['regdb'], False, REMOVALS['regdb'])


def llcm_problem(data_path, trial, tvsearch, protocol):
    sampled = lambda mode, modal: ImageSet(*dm.process_gallery_llcm(data_path, mode, trial), modal)
    every = lambda mode, modal: ImageSet(*dm.process_query_llcm(data_path, mode), modal)
    rule = METRICS['llcm'], REMOVALS['llcm']
    if tvsearch:  # infrared -> visible
        return Problem(every(2, Modal.THERMAL), sampled(1, Modal.VISIBLE), rule[0], False, rule[1])
    if protocol == 'release':
        # The release's "VIS to IR": the sampled infrared images are the queries and every
        # visible test image is the gallery, with its pool-feature quirk.
        return Problem(sampled(2, Modal.THERMAL), every(1, Modal.VISIBLE), rule[0], True, rule[1])
    return Problem(every(1, Modal.VISIBLE), sampled(2, Modal.THERMAL), rule[0], False, rule[1])


def sysu_problem(data_path, trial, mode, gallery='random', shots=1):
    query = ImageSet(*dm.process_query_sysu(data_path, mode), Modal.THERMAL)
    gallery = ImageSet(*dm.process_gallery_sysu(data_path, mode, trial, gallery, shots), Modal.VISIBLE)
    return Problem(query, gallery, METRICS['sysu'], False, REMOVALS['sysu'])


def build_problem(dataset, data_path, trial, mode='all', tvsearch=False, protocol='release', gallery='random',
                  shots=1):
    """The test problem of one trial. `gallery` ('random': the release's draws, or 'official': the
    dataset's permutations) and `shots` (images per identity and camera) apply to SYSU-MM01."""
    if dataset == 'sysu':
        return sysu_problem(data_path, trial, mode, gallery, shots)  # always infrared -> visible
    if dataset == 'regdb':
        return regdb_problem(data_path, trial, tvsearch)
    return llcm_problem(data_path, trial, tvsearch, protocol)


def net_has_middle(net):
    """Whether `net` (an embed_net, or anything with its `architecture()`) gives middle features."""
    architecture = getattr(net, 'architecture', None)
    return architecture()['middle'] if callable(architecture) else True


def has_middle(scores):
    """Whether a set of scores (or features) is a middle-modality network's: it has the middle ones."""
    return 'VIS-MR FC' in scores or 'bn_mid' in scores


def present_scores(scores):
    """The names of SCORES that `scores` (any mapping by score name) holds, in SCORES' order."""
    return [name for name in SCORES if name in scores]


class FeatureBank:
    """Test features by (branch, image path), so an image shared by several trials is embedded once.
    Each image has four float32 vectors: pool/bn features of the original and the middle-modality
    branch, kept as rows of one (n, 4, dim) array per branch (a network without the middle modality:
    two, pool/bn original, (n, 2, dim)). With `flip`, each vector is the sum of
    the image's and its horizontal mirror's, scaled back to unit length."""

    NAMES = ('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')
    PROGRESS_SECONDS = 10

    def __init__(self, net, device, img_h, img_w, batch_size, workers, channels_last=True, amp_dtype=None,
                 flip=False):
        self.net, self.device = net, device
        self.img_h, self.img_w, self.batch_size, self.workers = img_h, img_w, batch_size, workers
        self.format, self.amp_dtype, self.flip = memory_format(channels_last), amp_dtype, flip
        self.middle = net_has_middle(net)
        self.names = self.NAMES if self.middle else ORIGINAL_FEATURES
        self.rows = {}        # (branch, path) -> row of self.features[branch]
        self.features = {}    # branch -> float32 array (n, 4, dim)

    def add(self, paths, modal, what=None):
        """Embed the images of `paths` not embedded yet through branch `modal`; `what` names one of
        them in the progress lines ('query visible image')."""
        todo = list(dict.fromkeys(p for p in paths if (modal, p) not in self.rows))
        if not todo:
            return
        what = what or f'{Modal(modal).name.lower()} image'
        cuda = self.device.type == 'cuda'
        loader = DataLoader(TestData(todo, np.zeros(len(todo)), self.img_h, self.img_w), batch_size=self.batch_size,
                            shuffle=False, num_workers=self.workers, pin_memory=cuda,
                            worker_init_fn=quiet_worker)
        out = None
        start = last_print = time.perf_counter()
        self.net.eval()
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            done = 0
            for x, _ in loader:
                x = x.to(self.device, non_blocking=True, memory_format=self.format)
                block = self.embed_batch(x, modal)
                if self.flip:   # --flip: the mirror image's features added, each vector back to unit length
                    mirrored = self.embed_batch(x.flip(3).contiguous(memory_format=self.format), modal)
                    block = torch.nn.functional.normalize(block + mirrored, dim=2)
                b = x.shape[0]
                if out is None:   # host memory for all of them, filled a batch at a time
                    out = torch.empty((len(todo), *block.shape[1:]), dtype=torch.float32, pin_memory=cuda)
                out[done:done + b].copy_(block, non_blocking=True)
                done += b
                now = time.perf_counter()
                if now - last_print >= self.PROGRESS_SECONDS and done < len(todo):
                    last_print = now
                    print(f'  embedding {what}s: {done}/{len(todo)} ({done / (now - start):.0f} images/s)', flush=True)
        if cuda:
            torch.cuda.synchronize()   # the last non-blocking copies
        bad = int((~np.isfinite(out.numpy())).any(axis=(1, 2)).sum())
        if bad:
            raise ReIDError(f'the network produces NaN/inf features ({bad} of {plural(len(todo), what)}): its weights or '
                            'activations are not finite (a diverged training?), so no score would mean anything')
        first = len(self.features.get(modal, ()))
        self.features[modal] = np.concatenate([self.features[modal], out.numpy()]) if first else out.numpy()
        self.rows.update(((modal, path), first + i) for i, path in enumerate(todo))
        seconds = time.perf_counter() - start
        print(f'  embedded {plural(len(todo), what)} in {seconds:.1f}s ({len(todo) / seconds:.0f} images/s)', flush=True)

    def embed_batch(self, x, modal):
        """(b, 4, dim) float32: the four feature vectors of each image of the batch `x` (without the
        middle modality (b, 2, dim): pool and bn original)."""
        pool, feat = self.net(x, x, x, x, modal)          # (2b, dim) each: [original; middle]; (b, dim) without
        if not self.middle:
            return torch.stack([pool, feat], dim=1).float()
        b = x.shape[0]
        return torch.stack([pool[:b], pool[b:], feat[:b], feat[b:]], dim=1).float()

    def get(self, image_set):
        """float64 matrices (the release's precision for similarities), keyed by feature name."""
        rows = self.features[image_set.modal][[self.rows[(image_set.modal, p)] for p in image_set.paths]]
        return {name: rows[:, k].astype(np.float64) for k, name in enumerate(self.names)}


class SavedBank:
    """The FeatureBank of a features file (features.Features): the ImageSets of `saved_problems`
    name rows of the file instead of image paths, and `get` reads those rows."""

    def __init__(self, features):
        self.features = features

    def get(self, image_set):
        return self.features.rows(np.asarray(image_set.paths, dtype=np.int64))


def saved_problems(features, trials):
    """`{trial: Problem}` and a SavedBank that score the trials of a features file exactly as the
    run that wrote it did: the same query and gallery rows in the same order, the same features."""
    quirk = bool(features.meta['llcm_pool_quirk'])
    regdb = features.dataset == 'regdb'

    def image_set(trial, side):
        rows = features.side(trial, side)
        modal = {int(m) for m in features.modality[rows]}
        if len(modal) != 1:
            raise ReIDError(f'{features.source}: the {side} of trial {trial} mixes network branches: a damaged file')
        return ImageSet(rows.tolist(), features.identity[rows], None if regdb else features.camera[rows], modal.pop())

    problems = {t: Problem(image_set(t, 'query'), image_set(t, 'gallery'), METRICS[features.dataset], quirk,
                           REMOVALS[features.dataset]) for t in trials}
    return problems, SavedBank(features)


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


def embed(net, dataset, data_path, trials, device, mode='all', tvsearch=False, protocol='release',
          img_h=384, img_w=192, batch_size=64, workers=4, channels_last=True, amp_dtype=None, flip=False,
          gallery='random', shots=1):
    """The trials' test problems `{trial: Problem}` and a FeatureBank holding every image they use.
    `channels_last` is the memory format of the inputs (give `net` the same); `amp_dtype` an autocast
    dtype or None; `flip` adds each image's mirror (see FeatureBank); `gallery` and `shots` as for
    `build_problem`."""
    problems = {t: build_problem(dataset, data_path, t, mode, tvsearch, protocol, gallery, shots) for t in trials}
    return problems, embed_problems(net, dataset, problems, device, img_h, img_w, batch_size, workers, channels_last,
                                    amp_dtype, flip)


def embed_problems(net, dataset, problems, device, img_h=384, img_w=192, batch_size=64, workers=4,
                   channels_last=True, amp_dtype=None, flip=False):
    """A FeatureBank holding every image of `problems` ({trial: Problem}, built by `build_problem` or
    otherwise, e.g. heldout.validation_problem); the options as for `embed`."""
    bank = FeatureBank(net, device, img_h, img_w, batch_size, workers, channels_last, amp_dtype, flip)
    for side in ('query', 'gallery'):
        for modal in (Modal.VISIBLE, Modal.THERMAL):
            paths = [p for pr in problems.values() if getattr(pr, side).modal == modal for p in getattr(pr, side).paths]
            bank.add(paths, modal, f'{side} {modality_word(dataset, modal)} image')
    return bank


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


def evaluate(net, dataset, data_path, trials, device, rerank=None, **options):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})` of `net`; `rerank` as for
    `score_trials`, `options` as for `embed`."""
    return score_trials(*embed(net, dataset, data_path, trials, device, **options), rerank=rerank)


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


def modality_word(dataset, modal):
    return 'visible' if modal == Modal.VISIBLE else dm.SECOND_MODALITY[dataset]


def direction(dataset, problem):
    """'infrared -> visible': the modality of the queries, then the gallery's."""
    return f'{modality_word(dataset, problem.query.modal)} -> {modality_word(dataset, problem.gallery.modal)}'


def problem_name(dataset, problem, mode='all'):
    """What a table scores, for its title: 'SYSU-MM01 all-search, infrared -> visible'."""
    name = dm.DATASET_NAMES[dataset]
    if dataset == 'sysu':
        return f'{name} {mode}-search, {direction(dataset, problem)}'
    if problem.llcm_pool_quirk:
        return (f'{name} release "VIS to IR" ({direction(dataset, problem)}: infrared queries, visible gallery, '
                'pool-term quirk; --protocol standard for visible -> infrared)')
    return f'{name} {direction(dataset, problem)}'


def sizes(problems):
    """'3803 queries x 301 gallery' over one or more problems (a range where they differ)."""
    span = lambda counts: f'{min(counts)}' if min(counts) == max(counts) else f'{min(counts)}-{max(counts)}'
    queries = span([len(pr.query.paths) for pr in problems])
    return f'{queries} quer{"y" if queries == "1" else "ies"} x {span([len(pr.gallery.paths) for pr in problems])} gallery'


def trial_title(dataset, trial, problem, mode='all'):
    """'SYSU-MM01 all-search, infrared -> visible, 3803 queries x 301 gallery (trial 0)'."""
    word = 'split' if dataset == 'regdb' else 'trial'
    return f'{problem_name(dataset, problem, mode)}, {sizes([problem])} ({word} {trial})'


def mean_title(dataset, problems, mode='all', protocol='release'):
    first = next(iter(problems.values()))
    return (f'Mean over {plural(len(problems), "trial")}: '
            f'{problem_name(dataset, first, mode)}, {sizes(problems.values())}, protocol {protocol}')


def rows_note(dataset, problem, middle=True):
    """One line naming what each row compares, in the direction tested (the rows keep the release's
    names, which read visible -> infrared whatever the direction); `middle=False`: the two rows of a
    network without the middle modality."""
    q, g = modality_word(dataset, problem.query.modal), modality_word(dataset, problem.gallery.modal)
    if not middle:
        return (f'rows (the release\'s names; no middle modality, so only these two): VIS-IR FC = {q} query '
                f'original vs {g} gallery original (bn features), ALL = VIS-IR FC + the same on the pool features')
    pool = ("4 x pool original vs original, the release's LLCM quirk" if problem.llcm_pool_quirk
            else 'the same four on the pool features')
    return (f'rows (the release\'s names): VIS-IR FC = {q} query original vs {g} gallery original (bn features), '
            f'VIS-MR FC = query original vs gallery middle, MIS-IR FC = query middle vs gallery original, '
            f'MIS-MR FC = middle vs middle, ALL FC = their sum, ALL = ALL FC + {pool}')


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


def format_spread(title, mean, std):
    """Rank-1 and mAP of every score as mean ± standard deviation over trials."""
    lines = [title, f'  {"score":<10}{"Rank-1":>17}{"mAP":>17}']
    for name in present_scores(mean):
        cells = [f'{100 * mean[name][k]:.2f} ± {100 * std[name][k]:.2f}%' for k in ('rank1', 'mAP')]
        lines.append(f'  {name:<10}' + ''.join(f'{c:>17}' for c in cells))
    return '\n'.join(lines + ([] if has_middle(mean) else [NO_MIDDLE_NOTE]))


def format_cameras(title, report, score):
    """Rank-1, mAP and mINP of `score` per query camera (`camera_report`)."""
    lines = [title, f'  {"camera":<8}{"queries":>9}' + ''.join(f'{h:>9}' for h in ('Rank-1', 'mAP', 'mINP'))]
    for camera, s in report[score].items():
        lines.append(f'  {"cam" + camera:<8}{s["queries"]:>9.0f}' + ''.join(f'{100 * s[k]:8.2f}%'
                                                                          for k in ('rank1', 'mAP', 'mINP')))
    return '\n'.join(lines)


def format_table(title, scores):
    lines = [title, f'  {"score":<10}' + ''.join(f'{h:>9}' for h in METRIC_HEADERS)]
    for name in present_scores(scores):
        lines.append(f'  {name:<10}' + ''.join(f'{100 * scores[name][k]:8.2f}%' for k in METRIC_KEYS))
    return '\n'.join(lines + ([] if has_middle(scores) else [NO_MIDDLE_NOTE]))

def load_model(path, device, arch='resnet50', se_channels=None, channels_last=True):
    """The network of checkpoint `path` on `device`. The release squeeze-excitation's channels are
    `se_channels` if given, else the ones the checkpoint stores, else (a release checkpoint) the
    topk tie order of `device`; they are printed."""
    ckpt = read_checkpoint(path)
    refuse_nonfinite(ckpt['net'], path)
    net = embed_net(arch=arch, **checkpoint_model_args(ckpt, path))
    load_state(net, ckpt['net'], path)
    epoch = ckpt.get('epoch')
    print(f'loaded {path}' + (f' (epoch {epoch})' if epoch is not None else ''), flush=True)
    net = net.to(device, memory_format=memory_format(channels_last))
    net.trained_on = trained_on(ckpt)   # what test.py checks against what it is asked to test
    net.training_args = training_args(ckpt)   # recorded in test.py's results file (tables.py groups runs by them)
    stored = tuple(ckpt['se_channels']) if ckpt.get('se_channels') is not None else None
    if not net.middle:
        if se_channels:
            raise ReIDError(f'--se-channels chooses middle-modality channels; {path} is a network without the '
                            'middle modality (trained with --no-middle)')
        print(f'network: {describe_architecture(net.architecture())}', flush=True)
        return net
    if net.architecture() != FULL_ARCHITECTURE:
        print(f'network: {describe_architecture(net.architecture())}', flush=True)
    if not net.SEnet.constant:
        if se_channels:
            raise ReIDError(f'--se-channels applies to the release squeeze-excitation only; {path} has the '
                            'working one, which picks its channels per sample')
        return net
    if se_channels and stored and tuple(se_channels) != stored:
        print(f'warning: {path} was trained with middle-modality channels {",".join(map(str, stored))}; '
              f'using --se-channels {",".join(map(str, se_channels))} instead')
    channels = net.SEnet.set_channels(se_channels or stored)
    source = ('--se-channels' if se_channels else 'stored in the checkpoint' if stored
              else "this device's torch.topk tie order; the checkpoint stores none")
    print(f'middle-modality channels: {",".join(map(str, channels))} ({source})', flush=True)
    return net
