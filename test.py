"""Evaluate IFALNet checkpoints on SYSU-MM01, RegDB or LLCM with the release's protocols.

    python test.py --dataset sysu --mode all --resume save_model/sysu_..._best.t --gpu 0
    python test.py --dataset regdb --resume 'save_model/regdb_..._trial_{trial}_best.t'
    python test.py --dataset llcm --resume llcm_..._best.t --results results.json
"""
import argparse
import json
import os
import time
from collections import namedtuple

import numpy as np
import torch
from torch.utils.data import DataLoader

import data_manager as dm
from data_loader import TestData
from eval_metrics import eval_llcm, eval_regdb, eval_sysu
from features import save_features
from model import Modal, embed_net
from utils import (ReIDError, add_common_args, atomic_write, checkpoint_model_args, load_state,
                   read_checkpoint, resolve_data_path, run_main, select_device)

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
    Each entry holds the four float32 vectors of one image: pool/bn features of the original and the
    middle-modality branch."""

    def __init__(self, net, device, img_h, img_w, batch_size, workers):
        self.net, self.device = net, device
        self.img_h, self.img_w, self.batch_size, self.workers = img_h, img_w, batch_size, workers
        self.rows = {}

    @torch.no_grad()
    def add(self, paths, modal):
        todo = list(dict.fromkeys(p for p in paths if (modal, p) not in self.rows))
        if not todo:
            return
        start = time.time()
        loader = DataLoader(TestData(todo, np.zeros(len(todo)), self.img_h, self.img_w),
                            batch_size=self.batch_size, shuffle=False, num_workers=self.workers)
        self.net.eval()
        done = 0
        for x, _ in loader:
            x = x.to(self.device)
            pool, feat = self.net(x, x, x, x, modal)          # (2b, 2048) each: [original; middle]
            b = x.shape[0]
            parts = [t.float().cpu().numpy() for t in (pool[:b], pool[b:], feat[:b], feat[b:])]
            for i in range(b):
                self.rows[(modal, todo[done + i])] = [p[i] for p in parts]
            done += b
        print(f'  embedded {len(todo)} {Modal(modal).name.lower()} images in {time.time() - start:.1f}s', flush=True)

    def get(self, image_set):
        """float64 matrices (the release's precision for similarities), keyed by feature name."""
        rows = [self.rows[(image_set.modal, p)] for p in image_set.paths]
        names = ('pool_ori', 'pool_mid', 'bn_ori', 'bn_mid')
        return {name: np.array([r[k] for r in rows], dtype=np.float64) for k, name in enumerate(names)}


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


def summarise(cmc, mAP, mINP):
    # A gallery smaller than 20 gives a shorter CMC (the release would fail here); the curve is flat
    # after its end, so Rank-k there is its last value.
    return {**{f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}, 'mAP': float(mAP),
            'mINP': float(mINP)}


def embed(net, dataset, data_path, trials, device, mode='all', tvsearch=False, protocol='release',
          img_h=384, img_w=192, batch_size=64, workers=4):
    """The trials' test problems `{trial: Problem}` and a FeatureBank holding every image they use."""
    problems = {t: build_problem(dataset, data_path, t, mode, tvsearch, protocol) for t in trials}
    bank = FeatureBank(net, device, img_h, img_w, batch_size, workers)
    for side in ('query', 'gallery'):
        for modal in (Modal.VISIBLE, Modal.THERMAL):
            bank.add([p for pr in problems.values() if getattr(pr, side).modal == modal
                      for p in getattr(pr, side).paths], modal)
    return problems, bank


def score_trials(problems, bank):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})`."""
    results = []
    for trial, pr in problems.items():
        q, g = bank.get(pr.query), bank.get(pr.gallery)
        sims = score_similarities(q, g, pr.llcm_pool_quirk)
        results.append((trial, {name: pr.metric(-sims[name], pr.query, pr.gallery) for name in SCORES}))
    return results


def evaluate(net, dataset, data_path, trials, device, mode='all', tvsearch=False, protocol='release',
             img_h=384, img_w=192, batch_size=64, workers=4):
    """For each trial, `(trial, {score name: (cmc, mAP, mINP)})` of `net`."""
    return score_trials(*embed(net, dataset, data_path, trials, device, mode, tvsearch, protocol,
                               img_h, img_w, batch_size, workers))


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


def resolve_checkpoint(resume, model_path, trial=None):
    """`--resume` is a path, or a name under `--model_path` as in the release; `{trial}` is filled in."""
    name = resume.replace('{trial}', str(trial)) if trial is not None else resume
    for candidate in (name, os.path.join(model_path, name)):
        if os.path.isfile(candidate):
            return candidate
    raise ReIDError(f'checkpoint not found: {name} (also looked in --model_path {model_path})')


def load_model(path, device, arch):
    ckpt = read_checkpoint(path)
    net = embed_net(arch=arch, **checkpoint_model_args(ckpt, path))
    load_state(net, ckpt['net'], path)
    epoch = ckpt.get('epoch')
    print(f'loaded {path}' + (f' (epoch {epoch})' if epoch is not None else ''), flush=True)
    return net.to(device)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate IFALNet on SYSU-MM01, RegDB or LLCM.')
    add_common_args(parser)
    group = parser.add_argument_group('test')
    group.add_argument('--protocol', default='release', choices=('release', 'standard'),
                       help="'release' reproduces the release's numbers, quirks included; 'standard' "
                            'uses the intended query/gallery roles and score terms (LLCM)')
    group.add_argument('--trials', default=None,
                       help='comma-separated trials to run (default: all ten; SYSU/LLCM gallery '
                            'draws 0..9, RegDB splits 1..10)')
    group.add_argument('--results', default=None, metavar='FILE', help='write the scores as JSON here')
    group.add_argument('--save-features', dest='save_features', default=None, metavar='FILE.npz',
                       help="write every test image's path, identity, camera, modality and four feature "
                            "vectors, and each trial's query and gallery, here (see features.py; "
                            'visualize.py reads it)')
    args = parser.parse_args(argv)
    if not args.resume:
        parser.error('--resume is required: the checkpoint to evaluate')
    return args


def parse_trials(text, dataset):
    if text is None:
        return list(DEFAULT_TRIALS[dataset])
    try:
        trials = [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise ReIDError(f'--trials takes comma-separated integers, not {text!r}') from None
    allowed = DEFAULT_TRIALS[dataset]
    if not trials or any(t not in allowed for t in trials):
        raise ReIDError(f'--trials for {dataset} must be within {allowed.start}..{allowed.stop - 1}, got {text!r}')
    return trials


def main(argv=None):
    args = parse_args(argv)
    device = select_device(args.gpu)
    data_path = resolve_data_path(args.dataset, args.data_path)
    trials = parse_trials(args.trials, args.dataset)
    options = dict(mode=args.mode, tvsearch=args.tvsearch, protocol=args.protocol, img_h=args.img_h,
                   img_w=args.img_w, batch_size=args.test_batch, workers=args.workers)
    if args.dataset == 'sysu' and args.tvsearch:
        print('note: SYSU-MM01 is always evaluated infrared -> visible; --tvsearch is ignored')

    per_trial, results, runs = [], [], []   # runs: (checkpoint, problems, bank) kept for --save-features
    if args.dataset == 'regdb' and '{trial}' in args.resume:
        for trial in trials:  # one model per RegDB split
            checkpoint = resolve_checkpoint(args.resume, args.model_path, trial)
            net = load_model(checkpoint, device, args.arch)
            problems, bank = embed(net, args.dataset, data_path, [trial], device, **options)
            results += score_trials(problems, bank)
            runs += [(checkpoint, problems, bank)] if args.save_features else []
            per_trial += summarise_trials(results[-1:])
            print(format_table(f'Trial {trial}', per_trial[-1]), flush=True)
    else:
        if args.dataset == 'regdb' and len(trials) > 1:
            print('warning: one checkpoint for every RegDB split; the release trains one model per '
                  "split (put {trial} in --resume to load each split's own)")
        checkpoint = resolve_checkpoint(args.resume, args.model_path)
        net = load_model(checkpoint, device, args.arch)
        problems, bank = embed(net, args.dataset, data_path, trials, device, **options)
        results = score_trials(problems, bank)
        runs = [(checkpoint, problems, bank)]
        per_trial = summarise_trials(results)
        for result in per_trial:
            print(format_table(f'Trial {result["trial"]}', result))
    mean = mean_scores(per_trial)
    print(format_table(f'Mean over {len(trials)} trial(s): {args.dataset}'
                       + (f' {args.mode}' if args.dataset == 'sysu' else '')
                       + f', protocol {args.protocol}', mean), flush=True)
    if args.save_features:
        meta = {'dataset': args.dataset, 'mode': args.mode, 'protocol': args.protocol, 'tvsearch': args.tvsearch,
                'img_h': args.img_h, 'img_w': args.img_w, 'arch': args.arch,
                'llcm_pool_quirk': any(pr.llcm_pool_quirk for _, problems, _ in runs for pr in problems.values())}
        save_features(args.save_features, runs, data_path, meta)
        print(f'features written to {args.save_features}')
    if args.results:
        report = {'dataset': args.dataset, 'mode': args.mode, 'tvsearch': args.tvsearch,
                  'protocol': args.protocol, 'trials': trials, 'mean': mean, 'per_trial': per_trial,
                  'cmc': cmc_report(results)}
        atomic_write(args.results, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')
        print(f'results written to {args.results}')
    return mean


if __name__ == '__main__':
    run_main(main)
