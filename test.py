"""Evaluate IFALNet checkpoints on SYSU-MM01, RegDB or LLCM with the release's protocols.

    python test.py --dataset sysu --mode all --resume save_model/sysu_..._best.t --gpu 0
    python test.py --dataset regdb --resume 'save_model/regdb_..._trial_{trial}_best.t'
    python test.py --dataset llcm --resume llcm_..._best.t --results results.json

This is the command line (flags, input checks, the RegDB one-model-per-split loop, tables and
files); what it computes lives in evaluation.py.
"""
import json

import data_manager as dm
from checkpoint import resolve_checkpoint
from coverage import gaps_warning, test_set_gaps
from device import autocast_dtype, select_device
from evaluation import (DEFAULT_TRIALS, cmc_report, embed, format_table, load_model, mean_scores, score_trials,
                        summarise_trials)
from features import save_features
from flags import add_common_args, add_flag, check_counts, make_parser, resolve_data_path
from outputs import check_output_file
from utils import ReIDError, atomic_write, run_main


def parse_args(argv=None):
    parser = make_parser('Evaluate IFALNet on SYSU-MM01, RegDB or LLCM.')
    add_common_args(parser)
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
    add_flag(group, '--strict', action='store_true',
             help='refuse an incomplete test set (a camera folder missing, a test identity without query or '
                  'gallery images) instead of warning')
    args = parser.parse_args(argv)
    if not args.resume:
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


def check_test_set(args, data_path, trials):
    """The gaps of an incomplete test set (see coverage.py): a loud warning, or with --strict an error."""
    gaps = test_set_gaps(args.dataset, data_path, trials, args.mode, args.tvsearch, args.protocol)
    if gaps and args.strict:
        raise ReIDError(f'--strict: the test set in {data_path} is incomplete: ' + '; '.join(gaps))
    if gaps:
        print(gaps_warning(gaps, data_path), flush=True)
    return gaps


def main(argv=None):
    args = parse_args(argv)
    # Every input is checked before the first image is embedded.
    check_counts(args, {'--img_h': 1, '--img_w': 1, '--test-batch': 1, '--workers': 0})
    trials = select_trials(args)
    data_path = dm.check_layout(args.dataset, resolve_data_path(args.dataset, args.data_path), trials)
    checkpoints = resolve_checkpoints(args.resume, args.model_path, args.dataset, trials)
    for flag, path in (('--results', args.results), ('--save-features', args.save_features)):
        if path:
            check_output_file(path, flag)
    gaps = check_test_set(args, data_path, trials)
    device = select_device(args.gpu)
    options = dict(mode=args.mode, tvsearch=args.tvsearch, protocol=args.protocol, img_h=args.img_h,
                   img_w=args.img_w, batch_size=args.test_batch, workers=args.workers,
                   channels_last=args.channels_last, amp_dtype=autocast_dtype(args.amp, device))
    model = dict(device=device, arch=args.arch, se_channels=args.se_channels, channels_last=args.channels_last)
    if args.dataset == 'sysu' and args.tvsearch:
        print('note: SYSU-MM01 is always evaluated infrared -> visible; --tvsearch is ignored')

    per_trial, results, runs = [], [], []   # runs: (checkpoint, problems, bank) kept for --save-features
    if args.dataset == 'regdb' and '{trial}' in args.resume:
        for trial in trials:  # one model per RegDB split
            net = load_model(checkpoints[trial], **model)
            problems, bank = embed(net, args.dataset, data_path, [trial], device, **options)
            results += score_trials(problems, bank)
            runs += [(checkpoints[trial], problems, bank)] if args.save_features else []
            per_trial += summarise_trials(results[-1:])
            print(format_table(f'Trial {trial}', per_trial[-1]), flush=True)
    else:
        if args.dataset == 'regdb' and len(trials) > 1:
            print('warning: one checkpoint for every RegDB split; the release trains one model per '
                  "split (put {trial} in --resume to load each split's own)")
        net = load_model(checkpoints[trials[0]], **model)
        problems, bank = embed(net, args.dataset, data_path, trials, device, **options)
        results = score_trials(problems, bank)
        runs = [(checkpoints[trials[0]], problems, bank)]
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
                  'cmc': cmc_report(results), **({'warnings': gaps} if gaps else {})}
        atomic_write(args.results, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')
        print(f'results written to {args.results}')
    return mean


if __name__ == '__main__':
    run_main(main)
