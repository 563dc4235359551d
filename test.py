"""Evaluate IFALNet checkpoints on SYSU-MM01, RegDB or LLCM with the release's protocols.

    python test.py --dataset sysu --mode all --resume save_model/sysu_..._best.t --gpu 0
    python test.py --dataset regdb --resume 'save_model/regdb_..._trial_{trial}_best.t'
    python test.py --dataset llcm --resume llcm_..._best.t --results results.json

This is the command line (flags, input checks, the RegDB one-model-per-split loop, tables and
files); what it computes lives in evaluation.py.
"""
import json
import sys

import data_manager as dm
from checkpoint import resolve_checkpoint
from device import autocast_dtype, select_device
from evaluation import (DEFAULT_TRIALS, SCORES, Rerank, camera_report, cmc_report, embed, format_cameras,
                        format_spread, format_table, load_model, mean_scores, saved_problems, score_trials,
                        std_scores, summarise_trials)
from features import Features, save_features
from flags import add_common_args, add_flag, check_counts, make_parser, resolve_data_path
from utils import ReIDError, atomic_write, run_main


FEATURES_FLAGS = ('--from-features', '--from_features')


def parse_args(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    from_features = any(a.split('=')[0] in FEATURES_FLAGS for a in argv)
    parser = make_parser('Evaluate IFALNet on SYSU-MM01, RegDB or LLCM.')
    add_common_args(parser, checkpoint_required=not from_features)
    group = parser.add_argument_group('test')
    add_flag(group, '--protocol', default='release', choices=('release', 'standard'),
             help="'release' reproduces the release's numbers, quirks included; 'standard' uses the intended "
                  'query/gallery roles and score terms (LLCM)')
    add_flag(group, '--trials', default=None, metavar='LIST',
             help='comma-separated trials to run (default: all ten; SYSU-MM01/LLCM gallery draws 0..9, RegDB '
                  'splits 1..10)')
    add_flag(group, '--results', default=None, metavar='FILE', help='write the scores as JSON here')
    add_flag(group, '--save-features', default=None, metavar='FILE.npz',
             help="write every test image's path, identity, camera, modality and four feature vectors, and "
                  "each trial's query and gallery, here (see features.py; visualize.py reads it)")
    group = parser.add_argument_group('test-time options (the defaults are the release\'s)')
    add_flag(group, '--rerank', action='store_true',
             help='k-reciprocal re-ranking (Zhong et al., CVPR 2017) of every score, on the Euclidean distances '
                  "of the score's query- and gallery-side vectors (see the README)")
    add_flag(group, '--k1', default=20, type=int, help='re-ranking: size of the k-reciprocal neighbour sets')
    add_flag(group, '--k2', default=6, type=int, help='re-ranking: neighbours of the local query expansion')
    add_flag(group, '--lambda-value', default=0.3, type=float,
             help='re-ranking: weight of the original distance in the final one (0..1)')
    add_flag(group, '--flip', action='store_true',
             help="add each test image's horizontal mirror: the two images' features are summed and scaled back "
                  'to unit length')
    add_flag(group, '--gallery', default='random', choices=('random', 'official'),
             help="SYSU-MM01 gallery: 'random' draws as the release does; 'official' takes the dataset's own "
                  'permutations, exp/rand_perm_cam.mat (trial t: row t)')
    add_flag(group, '--shots', default=1, type=int, choices=(1, 10),
             help='SYSU-MM01 gallery images per identity and camera: 1 (single-shot) or 10 (multi-shot)')
    add_flag(group, '--per-camera', action='store_true',
             help='also print Rank-1, mAP and mINP per query camera (the results file always has them)')
    add_flag(group, FEATURES_FLAGS[0], default=None, metavar='FILE.npz',
             help='score the features file of an earlier --save-features instead of a checkpoint: no network, '
                  'no images; dataset, mode, protocol, direction and trials come from the file (--trials may '
                  'choose some of them)')
    args = parser.parse_args(argv)
    if not args.resume and not args.from_features:
        parser.error('--resume is required: the checkpoint to evaluate')
    return args


def parse_trials(text, dataset, flag='--trials'):
    if text is None:
        return list(DEFAULT_TRIALS[dataset])
    try:
        trials = [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise ReIDError(f'{flag} takes comma-separated integers, not {text!r}') from None
    allowed = DEFAULT_TRIALS[dataset]
    if not trials or any(t not in allowed for t in trials):
        raise ReIDError(f'{flag} for {dataset} must be within {allowed.start}..{allowed.stop - 1}, got {text!r}')
    return trials


def select_trials(args):
    """--trials, or for RegDB `--trial N` (the release's flag for the split): the same as --trials N."""
    if args.trial is not None:
        if args.dataset != 'regdb':
            print(f'note: --trial selects a RegDB split; {args.dataset} gallery draws are chosen with --trials, '
                  f'so --trial {args.trial} is ignored')
        elif args.trials is None or parse_trials(args.trials, 'regdb') == [args.trial]:
            return parse_trials(str(args.trial), 'regdb', '--trial')
        else:
            raise ReIDError(f'--trial {args.trial} and --trials {args.trials} ask for different RegDB splits; '
                            'give one of them')
    return parse_trials(args.trials, args.dataset)


def resolve_checkpoints(resume, model_path, dataset, trials):
    """{trial: checkpoint path}, resolved before anything is embedded. For RegDB, '{trial}' in
    --resume names one checkpoint per split; the missing ones are listed together."""
    if not (dataset == 'regdb' and '{trial}' in resume):
        path = resolve_checkpoint(resume, model_path)
        return {trial: path for trial in trials}
    found, missing = {}, []
    for trial in trials:
        try:
            found[trial] = resolve_checkpoint(resume, model_path, trial)
        except ReIDError:
            missing.append(trial)
    if missing:
        lines = [f'  {resume.replace("{trial}", str(trial))}' for trial in missing]
        have = (f'\nfound the checkpoints of split(s) {", ".join(map(str, found))}: test those alone with '
                f'--trials {",".join(map(str, found))}') if found else ''
        raise ReIDError(f'{len(missing)} of {len(trials)} RegDB checkpoints not found (looked for each as given '
                        f'and under --model_path {model_path}):\n' + '\n'.join(lines) + have)
    return found


def check_test_time_options(args, dataset=None):
    """The re-ranking parameters; --gallery and --shots only for SYSU-MM01 (`dataset` None: the
    features file's, whose galleries are fixed)."""
    check_counts(args, {'--k1': 1, '--k2': 1})
    if not 0 <= args.lambda_value <= 1:
        raise ReIDError(f'--lambda-value must be within 0..1, got {args.lambda_value}')
    if dataset not in (None, 'sysu') and (args.gallery, args.shots) != ('random', 1):
        raise ReIDError(f'--gallery and --shots choose SYSU-MM01 galleries; {dataset} has its own test lists')
    if args.from_features and (args.flip or (args.gallery, args.shots) != ('random', 1)):
        raise ReIDError('--flip, --gallery and --shots change what is embedded, so they cannot be used with '
                        '--from-features: run test.py on the checkpoint with them (and --save-features)')


def embed_and_score(args, trials, rerank, by_camera):
    """Embed with the checkpoint(s) of --resume and score: (setting, results, per_trial, runs)."""
    data_path = dm.check_layout(args.dataset, resolve_data_path(args.dataset, args.data_path), trials)
    checkpoints = resolve_checkpoints(args.resume, args.model_path, args.dataset, trials)
    device = select_device(args.gpu)
    options = dict(mode=args.mode, tvsearch=args.tvsearch, protocol=args.protocol, img_h=args.img_h,
                   img_w=args.img_w, batch_size=args.test_batch, workers=args.workers,
                   channels_last=args.channels_last, amp_dtype=autocast_dtype(args.amp, device), flip=args.flip,
                   gallery=args.gallery, shots=args.shots)
    model = dict(device=device, arch=args.arch, se_channels=args.se_channels, channels_last=args.channels_last)
    if args.dataset == 'sysu' and args.tvsearch:
        print('note: SYSU-MM01 is always evaluated infrared -> visible; --tvsearch is ignored')

    per_trial, results, runs = [], [], []   # runs: (checkpoint, problems, bank) kept for --save-features
    if args.dataset == 'regdb' and '{trial}' in args.resume:
        for trial in trials:  # one model per RegDB split
            net = load_model(checkpoints[trial], **model)
            problems, bank = embed(net, args.dataset, data_path, [trial], device, **options)
            results += score_trials(problems, bank, rerank, by_camera)
            runs += [(checkpoints[trial], problems, bank)] if args.save_features else []
            per_trial += summarise_trials(results[-1:])
            print(format_table(f'Trial {trial}', per_trial[-1]), flush=True)
    else:
        if args.dataset == 'regdb' and len(trials) > 1:
            print('warning: one checkpoint for every RegDB split; the release trains one model per '
                  "split (put {trial} in --resume to load each split's own)")
        net = load_model(checkpoints[trials[0]], **model)
        problems, bank = embed(net, args.dataset, data_path, trials, device, **options)
        results = score_trials(problems, bank, rerank, by_camera)
        runs = [(checkpoints[trials[0]], problems, bank)]
        per_trial = summarise_trials(results)
        for result in per_trial:
            print(format_table(f'Trial {result["trial"]}', result))
    if args.save_features:
        meta = {'dataset': args.dataset, 'mode': args.mode, 'protocol': args.protocol, 'tvsearch': args.tvsearch,
                'img_h': args.img_h, 'img_w': args.img_w, 'arch': args.arch,
                'llcm_pool_quirk': any(pr.llcm_pool_quirk for _, problems, _ in runs for pr in problems.values()),
                'flip': args.flip, 'gallery': args.gallery, 'shots': args.shots}
        save_features(args.save_features, runs, data_path, meta)
        print(f'features written to {args.save_features}')
    setting = {'dataset': args.dataset, 'mode': args.mode, 'tvsearch': args.tvsearch, 'protocol': args.protocol,
               'flip': args.flip, 'gallery': args.gallery, 'shots': args.shots}
    return setting, results, per_trial


def score_saved(args, rerank, by_camera):
    """Score the features file of --from-features: (setting, trials, results, per_trial)."""
    features = Features(args.from_features)
    meta = features.meta
    trials = features.trials if args.trials is None else [features.trial(t) for t in parse_trials(args.trials, features.dataset)]
    print(f'scoring {args.from_features}: {features.dataset}, protocol {meta["protocol"]}, trials '
          f'{",".join(map(str, trials))} (no network, no images)', flush=True)
    problems, bank = saved_problems(features, trials)
    results = score_trials(problems, bank, rerank, by_camera)
    per_trial = summarise_trials(results)
    for result in per_trial:
        print(format_table(f'Trial {result["trial"]}', result))
    setting = {'dataset': features.dataset, 'mode': meta['mode'], 'tvsearch': meta['tvsearch'],
               'protocol': meta['protocol'], 'flip': meta.get('flip', False),
               'gallery': meta.get('gallery', 'random'), 'shots': meta.get('shots', 1)}
    return setting, trials, results, per_trial


def main(argv=None):
    args = parse_args(argv)
    # Every input is checked before the first image is embedded.
    check_counts(args, {'--img_h': 1, '--img_w': 1, '--test-batch': 1, '--workers': 0})
    rerank = Rerank(args.k1, args.k2, args.lambda_value) if args.rerank else None
    by_camera = {} if args.results or args.per_camera else None
    if args.from_features:
        check_test_time_options(args)
        setting, trials, results, per_trial = score_saved(args, rerank, by_camera)
    else:
        trials = select_trials(args)
        check_test_time_options(args, args.dataset)
        setting, results, per_trial = embed_and_score(args, trials, rerank, by_camera)
    dataset, mode, protocol = setting['dataset'], setting['mode'], setting['protocol']
    mean = mean_scores(per_trial)
    print(format_table(f'Mean over {len(trials)} trial(s): {dataset}' + (f' {mode}' if dataset == 'sysu' else '')
                       + f', protocol {protocol}', mean), flush=True)
    std = std_scores(per_trial)
    if len(trials) > 1:
        print(format_spread(f'Spread over {len(trials)} trials: mean ± standard deviation', mean, std), flush=True)
    cameras = camera_report(by_camera) if by_camera else None
    if args.per_camera:
        if cameras is None:
            print(f'note: --per-camera: {dataset} has no camera numbers')
        for name in SCORES if cameras else ():
            print(format_cameras(f'{name} per query camera (mean over {len(trials)} trial(s))', cameras, name))
    if args.results:
        report = {**setting, 'trials': trials, 'mean': mean, 'std': std, 'per_trial': per_trial,
                  'cmc': cmc_report(results), 'per_camera': cameras,
                  'rerank': rerank._asdict() if rerank else None}
        atomic_write(args.results, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')
        print(f'results written to {args.results}')
    return mean


if __name__ == '__main__':
    run_main(main)
