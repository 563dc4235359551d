"""The evaluation engine: everything test.py computes, for test.py, train.py's validation,
visualize.py and bench.py alike.

- the test problem of each dataset, protocol and trial (`build_problem`: query and gallery image
  sets, the metric, the release's LLCM pool-feature quirk);
- the feature bank (`FeatureBank`: each test image embedded once, whatever the trials share) and
  `embed`, which fills it for a set of trials;
- the six similarity matrices the release reports (`score_similarities`), scoring per trial
  (`score_trials`, `evaluate`) with the collapse check (`feature_spread`, `collapse_warning`);
- summaries (`summarise`, `summarise_trials`, `mean_scores`), the CMC report of the results file
  (`cmc_report`) and the table printed for them (`format_table`);
- the network of a checkpoint, ready to evaluate (`load_model`).
"""
import time
from collections import namedtuple

import numpy as np
import torch
from torch.utils.data import DataLoader

import data_manager as dm
from checkpoint import checkpoint_model_args, load_state, read_checkpoint, refuse_nonfinite
from data_loader import TestData
from device import autocast, memory_format
from eval_metrics import eval_llcm, eval_regdb, eval_sysu
from interrupt import quiet_worker
from model import Modal, embed_net
from utils import ReIDError

SCORES = ('VIS-IR FC', 'VIS-MR FC', 'MIS-IR FC', 'MIS-MR FC', 'ALL FC', 'ALL')
RANKS = (1, 5, 10, 20)
MAX_RANK = 20   # length of the CMC curves in the results file
DEFAULT_TRIALS = {'sysu': range(10), 'llcm': range(10), 'regdb': range(1, 11)}

# One side of a retrieval problem: image paths, identities, cameras (None for RegDB), and the
# network branch the images go through.
ImageSet = namedtuple('ImageSet', 'paths ids cams modal')
# The test problem of one trial: query and gallery sets, the metric, and whether the release's
# LLCM pool-feature term is used (see `score_similarities`).
Problem = namedtuple('Problem', 'query gallery metric llcm_pool_quirk')


def regdb_problem(data_path, trial, tvsearch):
    visible = ImageSet(*dm.process_test_regdb(data_path, trial, 'visible'), None, Modal.VISIBLE)
    thermal = ImageSet(*dm.process_test_regdb(data_path, trial, 'thermal'), None, Modal.THERMAL)
    # The release's RegDB branch ranks visible queries against the thermal gallery (and its
    # --tvsearch cannot be switched off); that is our default, True asks for thermal -> visible.
    query, gallery = (thermal, visible) if tvsearch else (visible, thermal)
    return Problem(query, gallery, lambda d, q, g: eval_regdb(d, q.ids, g.ids), False)


def llcm_problem(data_path, trial, tvsearch, protocol):
    sampled = lambda mode, modal: ImageSet(*dm.process_gallery_llcm(data_path, mode, trial), modal)
    every = lambda mode, modal: ImageSet(*dm.process_query_llcm(data_path, mode), modal)
    metric = lambda d, q, g: eval_llcm(d, q.ids, g.ids, q.cams, g.cams)
    if tvsearch:  # infrared -> visible
        return Problem(every(2, Modal.THERMAL), sampled(1, Modal.VISIBLE), metric, False)
    if protocol == 'release':
        # The release's "VIS to IR": the sampled infrared images are the queries and every
        # visible test image is the gallery, with its pool-feature quirk.
        return Problem(sampled(2, Modal.THERMAL), every(1, Modal.VISIBLE), metric, True)
    return Problem(every(1, Modal.VISIBLE), sampled(2, Modal.THERMAL), metric, False)


def sysu_problem(data_path, trial, mode):
    query = ImageSet(*dm.process_query_sysu(data_path, mode), Modal.THERMAL)
    gallery = ImageSet(*dm.process_gallery_sysu(data_path, mode, trial), Modal.VISIBLE)
    return Problem(query, gallery, lambda d, q, g: eval_sysu(d, q.ids, g.ids, q.cams, g.cams), False)


def build_problem(dataset, data_path, trial, mode='all', tvsearch=False, protocol='release'):
    if dataset == 'sysu':
        return sysu_problem(data_path, trial, mode)  # always infrared -> visible
    if dataset == 'regdb':
        return regdb_problem(data_path, trial, tvsearch)
    return llcm_problem(data_path, trial, tvsearch, protocol)


class FeatureBank:
    """Test features by (branch, image path), so an image shared by several trials is embedded once.
    Each image has four float32 vectors: pool/bn features of the original and the middle-modality
    branch, kept as rows of one (n, 4, dim) array per branch."""

    NAMES = ('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')
    PROGRESS_SECONDS = 10

    def __init__(self, net, device, img_h, img_w, batch_size, workers, channels_last=True, amp_dtype=None):
        self.net, self.device = net, device
        self.img_h, self.img_w, self.batch_size, self.workers = img_h, img_w, batch_size, workers
        self.format, self.amp_dtype = memory_format(channels_last), amp_dtype
        self.rows = {}        # (branch, path) -> row of self.features[branch]
        self.features = {}    # branch -> float32 array (n, 4, dim)

    def add(self, paths, modal, what=None):
        """Embed the images of `paths` not embedded yet through branch `modal`; `what` names them in
        the progress lines."""
        todo = list(dict.fromkeys(p for p in paths if (modal, p) not in self.rows))
        if not todo:
            return
        what = what or f'{Modal(modal).name.lower()} images'
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
                pool, feat = self.net(x, x, x, x, modal)          # (2b, dim) each: [original; middle]
                b = x.shape[0]
                block = torch.stack([pool[:b], pool[b:], feat[:b], feat[b:]], dim=1).float()   # (b, 4, dim)
                if out is None:   # host memory for all of them, filled a batch at a time
                    out = torch.empty((len(todo), *block.shape[1:]), dtype=torch.float32, pin_memory=cuda)
                out[done:done + b].copy_(block, non_blocking=True)
                done += b
                now = time.perf_counter()
                if now - last_print >= self.PROGRESS_SECONDS and done < len(todo):
                    last_print = now
                    print(f'  embedding {what}: {done}/{len(todo)} ({done / (now - start):.0f} images/s)', flush=True)
        if cuda:
            torch.cuda.synchronize()   # the last non-blocking copies
        bad = int((~np.isfinite(out.numpy())).any(axis=(1, 2)).sum())
        if bad:
            raise ReIDError(f'the network produces NaN/inf features ({bad} of {len(todo)} {what}): its weights or '
                            'activations are not finite (a diverged training?), so no score would mean anything')
        first = len(self.features.get(modal, ()))
        self.features[modal] = np.concatenate([self.features[modal], out.numpy()]) if first else out.numpy()
        self.rows.update(((modal, path), first + i) for i, path in enumerate(todo))
        seconds = time.perf_counter() - start
        print(f'  embedded {len(todo)} {what} in {seconds:.1f}s ({len(todo) / seconds:.0f} images/s)', flush=True)

    def get(self, image_set):
        """float64 matrices (the release's precision for similarities), keyed by feature name."""
        rows = self.features[image_set.modal][[self.rows[(image_set.modal, p)] for p in image_set.paths]]
        return {name: rows[:, k].astype(np.float64) for k, name in enumerate(self.NAMES)}


def score_similarities(q, g, llcm_pool_quirk=False):
    """The six similarity matrices the release reports, (num_query, num_gallery) each."""
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
    rule = '!' * 100
    return (f'{rule}\nWARNING: the model gives every image nearly the same features (spread {spread:.1e}, '
            f'below {COLLAPSE_SPREAD:.0e};\nan untrained network gives about 0.03-0.2): it has collapsed, and '
            'the scores below are meaningless.\nLikely cause: a learning rate too high for training without '
            "ImageNet weights. The release's SGD --lr 0.1\nexpects --pretrained imagenet; from scratch, use a "
            'smaller --lr, or --optim adam --lr 0.02 as demo.py does.\n' + rule)


def summarise(cmc, mAP, mINP):
    # A gallery smaller than 20 gives a shorter CMC (the release would fail here); the curve is flat
    # after its end, so Rank-k there is its last value.
    return {**{f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}, 'mAP': float(mAP),
            'mINP': float(mINP)}


def embed(net, dataset, data_path, trials, device, mode='all', tvsearch=False, protocol='release',
          img_h=384, img_w=192, batch_size=64, workers=4, channels_last=True, amp_dtype=None):
    """The trials' test problems `{trial: Problem}` and a FeatureBank holding every image they use.
    `channels_last` is the memory format of the inputs (give `net` the same); `amp_dtype` an autocast
    dtype or None."""
    problems = {t: build_problem(dataset, data_path, t, mode, tvsearch, protocol) for t in trials}
    bank = FeatureBank(net, device, img_h, img_w, batch_size, workers, channels_last, amp_dtype)
    for side in ('query', 'gallery'):
        for modal in (Modal.VISIBLE, Modal.THERMAL):
            paths = [p for pr in problems.values() if getattr(pr, side).modal == modal for p in getattr(pr, side).paths]
            word = 'visible' if modal == Modal.VISIBLE else dm.SECOND_MODALITY[dataset]
            bank.add(paths, modal, f'{side} {word} images')
    return problems, bank


def score_trials(problems, bank):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})`; warns when the features collapsed."""
    results, spread = [], np.inf
    for trial, pr in problems.items():
        q, g = bank.get(pr.query), bank.get(pr.gallery)
        spread = min(spread, feature_spread(q), feature_spread(g))
        sims = score_similarities(q, g, pr.llcm_pool_quirk)
        results.append((trial, {name: pr.metric(-sims[name], pr.query, pr.gallery) for name in SCORES}))
    if spread < COLLAPSE_SPREAD:
        print(collapse_warning(spread), flush=True)
    return results


def evaluate(net, dataset, data_path, trials, device, **options):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})` of `net`; `options` as for `embed`."""
    return score_trials(*embed(net, dataset, data_path, trials, device, **options))


def summarise_trials(results):
    """`evaluate`'s output as the results file's per-trial entries."""
    return [{'trial': trial, **{name: summarise(*raw[name]) for name in SCORES}} for trial, raw in results]


def cmc_curve(cmc):
    """Ranks 1..MAX_RANK; a shorter CMC (a gallery under 20) carries its last value forward, as
    `summarise` does."""
    return [float(cmc[min(r, len(cmc)) - 1]) for r in range(1, MAX_RANK + 1)]


def cmc_report(results):
    """The results file's "cmc" entry: every score's CMC curve per trial and its mean over trials."""
    per_trial = [{'trial': trial, **{name: cmc_curve(raw[name][0]) for name in SCORES}} for trial, raw in results]
    mean = {name: [float(np.mean([r[name][k] for r in per_trial])) for k in range(MAX_RANK)] for name in SCORES}
    return {'mean': mean, 'per_trial': per_trial}


def mean_scores(per_trial):
    return {name: {k: float(np.mean([r[name][k] for r in per_trial])) for k in per_trial[0][name]}
            for name in SCORES}


def format_table(title, scores):
    lines = [title, f'  {"score":<10}' + ''.join(f'{h:>9}' for h in ('Rank-1', 'Rank-5', 'Rank-10',
                                                                       'Rank-20', 'mAP', 'mINP'))]
    for name in SCORES:
        s = scores[name]
        values = [s[f'rank{r}'] for r in RANKS] + [s['mAP'], s['mINP']]
        lines.append(f'  {name:<10}' + ''.join(f'{100 * v:8.2f}%' for v in values))
    return '\n'.join(lines)

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
    stored = tuple(ckpt['se_channels']) if ckpt.get('se_channels') is not None else None
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
