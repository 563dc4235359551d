"""Evaluate IFALNet checkpoints on SYSU-MM01, RegDB or LLCM with the release's protocols.

    python test.py --dataset sysu --mode all --resume save_model/sysu_..._best.t --gpu 0
    python test.py --dataset regdb --resume 'save_model/regdb_..._trial_{trial}_best.t'
    python test.py --dataset llcm --resume llcm_..._best.t --results results.json

    python test.py --dataset sysu --resume sysu_..._best.t --corrupt all --severity all --results sysu_c.json

--resume also takes a model folder of export.py --format safetensors. Before embedding, test.py says
whether the test set copy is the published one (ifalnet/dataset_census.py) and what software and
hardware run it (ifalnet/environment_stamp.py); both go into the results file.

This is the command line (flags, input checks, the RegDB one-model-per-split loop, tables and
files); what it computes lives in the ifalnet/ package (feature_bank.py, scoring.py, and for
--corrupt corruptions.py and corruption_sweep.py), what it prints in ifalnet/report_text.py, the
results file in ifalnet/results_file.py.
"""
import os
from collections import Counter

import data_manager as dm
from ifalnet.flags import add_common_args, add_flag, check_counts, make_parser, resolve_data_path, workers_note
from ifalnet.interruption import run_main
from ifalnet.scoring import Rerank
from utils import ReIDError, loud


def parse_args(argv=None):
    parser = make_parser('Evaluate IFALNet on SYSU-MM01, RegDB or LLCM.')
    add_common_args(parser)
    group = parser.add_argument_group('test')
    add_flag(group, '--protocol', default='release', choices=('release', 'standard'),
             help="'release' reproduces the release's numbers, quirks included; 'standard' uses the intended "
                  'query/gallery roles and score terms. It changes LLCM only: without --tvsearch, release = '
                  'infrared -> visible with the pool-term quirk ("VIS to IR"), standard = visible -> infrared '
                  '(every visible query, sampled infrared gallery, four pool terms); with --tvsearch both are '
                  'infrared -> visible. SYSU-MM01 and RegDB: the same either way')
    add_flag(group, '--trials', default=None, metavar='LIST',
             help='comma-separated trials to run (default: all ten; SYSU-MM01/LLCM gallery draws 0..9, RegDB '
                  'splits 1..10)')
    add_flag(group, '--results', default=None, metavar='FILE', help='write the scores as JSON here')
    add_flag(group, '--save-features', default=None, metavar='FILE.npz',
             help="write every test image's path, identity, camera, modality and four feature vectors, and "
                  "each trial's query and gallery, here (see docs/evaluation.md; visualize.py reads it)")
    add_flag(group, '--onnx', nargs=2, default=None, metavar=('VISIBLE', 'THERMAL'),
             help="evaluate export.py's files of the visible and the thermal branch (ONNX, or TorchScript) "
                  'instead of a checkpoint')
    group = parser.add_argument_group("test-time options (the defaults are the release's)")
    add_flag(group, '--rerank', action='store_true',
             help='k-reciprocal re-ranking (Zhong et al., CVPR 2017) of every score, on the Euclidean distances '
                  "of the score's query- and gallery-side vectors (see docs/evaluation.md)")
    add_flag(group, '--k1', default=Rerank._field_defaults['k1'], type=int, help='re-ranking: size of the k-reciprocal neighbour sets')
    add_flag(group, '--k2', default=Rerank._field_defaults['k2'], type=int, help='re-ranking: neighbours of the local query expansion')
    add_flag(group, '--lambda-value', default=Rerank._field_defaults['lambda_value'], type=float,
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
    add_flag(group, '--from-features', default=None, metavar='FILE.npz',
             help='score the features file of an earlier --save-features instead of a checkpoint: no network, '
                  'no images; dataset, mode, protocol, direction and trials come from the file (--trials may '
                  'choose some of them)')
    add_flag(group, '--strict', action='store_true',
             help='refuse an incomplete test set (a camera folder missing, a test identity without query or '
                  'gallery images) instead of warning')
    group = parser.add_argument_group('corrupted test images (the corruption benchmark of Chen et al., NeurIPS 2021; '
                                      'needs requirements-corrupt.txt)')
    add_flag(group, '--corrupt', default=None, metavar='NAMES',
             help="also test with the visible test images corrupted after their resize: comma-separated corruptions, "
                  "'all' (the 20: the 19 of ImageNet-C and rain) or 'mix' (one drawn per image, as the benchmark's "
                  'code does); every image seeded, so a run repeats exactly (see docs/evaluation.md)')
    add_flag(group, '--severity', default=None, metavar='LEVELS',
             help="with --corrupt: comma-separated severities in 1..5 or 'all' (with mix: drawn per image) "
                  '(default: all)')
    add_flag(group, '--corrupt-seed', default=0, type=int, metavar='N',
             help='with --corrupt: the seed every image\'s corruption is derived from (with its path, corruption '
                  'and severity)')
    args = parser.parse_args(argv)
    sources = [flag for flag, value in (('--resume', args.resume), ('--onnx', args.onnx),
                                        ('--from-features', args.from_features)) if value]
    if not sources:
        parser.error('--resume is required: the checkpoint to evaluate (or --onnx VISIBLE THERMAL, or '
                     '--from-features FILE.npz)')
    if len(sources) > 1:
        parser.error(f'give one of --resume (a checkpoint), --onnx (exported files) and --from-features (a features '
                     f'file), not {" and ".join(sources)}')
    return args


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import numpy as np

from ifalnet.checkpoints import checkpoint_sha256, describe_training, input_size, load_model, resolve_checkpoint
from ifalnet.corruption_sweep import (Model, cells, check_clean_scores, done_cells, run_cells, summarise_cells,
                                      sweep_setting)
from ifalnet.corruptions import check_installed, parse_corruptions, parse_severities
from ifalnet.dataset_census import check_copy, copy_line
from ifalnet.deploy import exported_pair
from ifalnet.devices import autocast_dtype, select_device
from ifalnet.environment_stamp import describe as describe_environment, major_differences, stamp
from ifalnet.feature_bank import embed
from ifalnet.features_file import Features, save_features, saved_problems
from ifalnet.output_paths import check_output_file
from ifalnet.partial_sets import gaps_warning, test_set_gaps
from ifalnet.report_text import (direction, format_cameras, format_corruption_grid, format_side_by_side, format_spread,
                                 format_table, mean_title, rows_note, trial_title)
from ifalnet.results_file import corruption_report, embedding_report, load_json, results_report, write_results
from ifalnet.scoring import (camera_report, cmc_report, has_middle, mean_scores, score_trials, std_scores,
                             summarise_trials)


def parse_trials(text, dataset, flag='--trials'):
    allowed = dm.dataset_info(dataset).trials
    if text is None:
        return list(allowed)
    try:
        trials = [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise ReIDError(f'{flag} takes comma-separated integers, not {text!r}') from None
    if not trials or any(t not in allowed for t in trials):
        raise ReIDError(f'{flag} for {dataset} must be within {allowed.start}..{allowed.stop - 1}, got {text!r}')
    return trials


def select_trials(args):
    """--trials, or for RegDB `--trial N` (the release's flag for the split): the same as --trials N."""
    if args.trial is not None:
        if not dm.dataset_info(args.dataset).split_trials:
            print(f'note: --trial selects a RegDB split; {args.dataset} gallery draws are chosen with --trials, '
                  f'so --trial {args.trial} is ignored')
        elif args.trials is None or parse_trials(args.trials, args.dataset) == [args.trial]:
            return parse_trials(str(args.trial), args.dataset, '--trial')
        else:
            raise ReIDError(f'--trial {args.trial} and --trials {args.trials} ask for different RegDB splits; '
                            'give one of them')
    return parse_trials(args.trials, args.dataset)


def resolve_checkpoints(resume, model_path, dataset, trials):
    """{trial: checkpoint path}, resolved before anything is embedded. For RegDB, '{trial}' in
    --resume names one checkpoint per split; the missing ones are listed together."""
    if not (dm.dataset_info(dataset).split_trials and '{trial}' in resume):
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
    """The gaps of an incomplete test set (see partial_sets.py): a loud warning, or with --strict an error."""
    gaps = test_set_gaps(args.dataset, data_path, trials, args.mode, args.tvsearch, args.protocol)
    if gaps and args.strict:
        raise ReIDError(f'--strict: the test set in {data_path} is incomplete: ' + '; '.join(gaps))
    if gaps:
        print(gaps_warning(gaps, data_path), flush=True)
    return gaps


def fit_to_checkpoint(net, path, args, trials):
    """Say what checkpoint `path` (loaded as `net`) was trained on and check it against this test:
    the image size (the checkpoint's unless --img_h/--img_w are given), the RegDB split and the
    dataset. Returns the test image size (h, w)."""
    info = net.trained_on
    print(f'{path} was trained on: {describe_training(info)}', flush=True)
    size = input_size(info, args.img_h, args.img_w, path)
    if info['dataset'] and info['dataset'] != args.dataset:
        print(f'note: {path} was trained on {dm.DATASETS[info["dataset"]].name}; this is a cross-dataset test on '
              f'{dm.DATASETS[args.dataset].name}', flush=True)
    elif dm.dataset_info(args.dataset).split_trials and info['trial'] and any(t != info['trial'] for t in trials):
        others = ', '.join(str(t) for t in trials if t != info['trial'])
        print(loud(f'WARNING: {path} was trained on RegDB split {info["trial"]} and is tested on split(s) {others}. '
                   'The ten splits are independent\nrandom halves of the 412 identities, so about half of another '
                   "split's test identities were in this model's training\nset: those scores are inflated. Test "
                   f'--trial {info["trial"]}, or put {{trial}} in --resume to load each split\'s own model.'),
              flush=True)
    return size


def short_folders_note(problem, shots):
    """--shots N: a note on the gallery's identity-camera folders that hold fewer than N images (each
    gives all it has), or '' when every folder has N."""
    counts = Counter(zip(np.asarray(problem.gallery.ids).tolist(), np.asarray(problem.gallery.cams).tolist()))
    short = [n for n in counts.values() if n < shots]
    if not short:
        return ''
    return (f'note: --shots {shots}: {len(short)} of {len(counts)} identity-camera folders of the gallery hold fewer '
            f'than {shots} images ({min(short)} to {max(short)}); each gives all it has\n')


def check_test_time_options(args, dataset=None):
    """The re-ranking parameters; --gallery and --shots only for SYSU-MM01 (`dataset` None: the
    features file's, whose galleries are fixed)."""
    check_counts(args, {'--k1': 1, '--k2': 1})
    if not 0 <= args.lambda_value <= 1:
        raise ReIDError(f'--lambda-value must be within 0..1, got {args.lambda_value}')
    if dataset is not None and not dm.dataset_info(dataset).gallery_options and (args.gallery, args.shots) != ('random', 1):
        raise ReIDError(f'--gallery and --shots choose SYSU-MM01 galleries; {dataset} has its own test lists')
    if args.from_features and (args.flip or (args.gallery, args.shots) != ('random', 1)):
        raise ReIDError('--flip, --gallery and --shots change what is embedded, so they cannot be used with '
                        '--from-features: run test.py on the checkpoint with them (and --save-features)')


def embed_and_score(args, trials, rerank, by_camera):
    """Embed with the checkpoint(s) of --resume (or the --onnx files) and score:
    (setting, results, per_trial, {trial: Problem}, gaps, models); `models` holds each network with
    its problems and clean feature bank for --corrupt (corruption_sweep.Model), else nothing."""
    data_path = dm.check_layout(args.dataset, resolve_data_path(args.dataset, args.data_path), trials)
    if args.onnx:   # the exported files stand in for the checkpoint, through the same protocol code
        exported = exported_pair(args.onnx, args.img_h, args.img_w)
        checkpoints = {trial: ' + '.join(args.onnx) for trial in trials}
    else:
        checkpoints = resolve_checkpoints(args.resume, args.model_path, args.dataset, trials)
    gaps = check_test_set(args, data_path, trials)
    copy = check_copy(args.dataset, data_path, 'test', trials)   # the copy against the published test set
    print(copy_line(copy), flush=True)
    device = select_device(args.gpu)
    environment = stamp(device)
    print(f'environment: {describe_environment(environment)}', flush=True)
    if note := workers_note(args.workers):
        print(note, flush=True)
    options = dict(mode=args.mode, tvsearch=args.tvsearch, protocol=args.protocol, batch_size=args.test_batch,
                   workers=args.workers, channels_last=args.channels_last, amp_dtype=autocast_dtype(args.amp, device),
                   flip=args.flip, gallery=args.gallery, shots=args.shots)
    model = dict(device=device, arch=args.arch, se_channels=args.se_channels, channels_last=args.channels_last)
    if dm.dataset_info(args.dataset).modes and args.tvsearch:   # SYSU-MM01 has one direction
        print('note: SYSU-MM01 is always evaluated infrared -> visible; --tvsearch is ignored')

    sizes, trained = [], []   # each model's test size (the features file records the first), what it was trained on
    used = []   # each model's path, the trials it scored and its training arguments (the results file's "checkpoints")
    models = []   # corruption_sweep.Model of each network, kept for --corrupt
    embedded = [0, 0.0]   # images embedded, seconds

    def load_and_embed(path, tested):
        if args.onnx:   # exported files test at the size they were exported for
            net = exported
            sizes.append((exported.img_h, exported.img_w))
            used.append({'path': path, 'trials': list(tested), 'args': None, 'sha256': None, 'environment': None})
        else:
            net = load_model(path, **model)
            sizes.append(fit_to_checkpoint(net, path, args, tested))
            note_other_versions(path, net.record['environment'], environment)
            trained.append({'checkpoint': path, **net.trained_on, 'dataset': net.trained_on['dataset'] or 'unknown'})
            used.append({'path': path, 'trials': list(tested), 'args': net.training_args,
                         'sha256': checkpoint_sha256(net, path) if args.results else None,
                         'environment': net.record['environment']})
        problems, bank = embed(net, args.dataset, data_path, tested, device, img_h=sizes[-1][0], img_w=sizes[-1][1],
                               **options)
        embedded[0], embedded[1] = embedded[0] + bank.images, embedded[1] + bank.seconds
        if args.corrupt:
            models.append(Model(net, problems, bank, dict(img_h=sizes[-1][0], img_w=sizes[-1][1], **{
                k: options[k] for k in ('batch_size', 'workers', 'channels_last', 'amp_dtype', 'flip')})))
        if args.shots > 1 and len(used) == 1:
            print(short_folders_note(next(iter(problems.values())), args.shots), end='', flush=True)
        return problems, bank

    per_trial, results, runs = [], [], []   # runs: (checkpoint, problems, bank) kept for --save-features
    titles = {}   # trial -> its problem, for the titles
    if dm.dataset_info(args.dataset).split_trials and '{trial}' in (args.resume or ''):
        for trial in trials:  # one model per RegDB split
            problems, bank = load_and_embed(checkpoints[trial], [trial])
            titles.update(problems)
            results += score_trials(problems, bank, rerank, by_camera)
            runs += [(checkpoints[trial], problems, bank)] if args.save_features else []
            per_trial += summarise_trials(results[-1:])
            if len(titles) == 1:
                print(rows_note(args.dataset, problems[trial], has_middle(per_trial[-1])))
            print(format_table(trial_title(args.dataset, trial, problems[trial], args.mode), per_trial[-1]), flush=True)
    else:
        if dm.dataset_info(args.dataset).split_trials and len(trials) > 1:
            print('warning: one checkpoint for every RegDB split; the release trains one model per '
                  "split (put {trial} in --resume to load each split's own)")
        problems, bank = load_and_embed(checkpoints[trials[0]], trials)
        titles = problems
        results = score_trials(problems, bank, rerank, by_camera)
        runs = [(checkpoints[trials[0]], problems, bank)]
        per_trial = summarise_trials(results)
        print_trials(args.dataset, args.mode, problems, per_trial)
    if args.save_features:
        meta = {'dataset': args.dataset, 'mode': args.mode, 'protocol': args.protocol, 'tvsearch': args.tvsearch,
                'img_h': sizes[0][0], 'img_w': sizes[0][1], 'arch': args.arch,
                'llcm_pool_quirk': any(pr.llcm_pool_quirk for _, problems, _ in runs for pr in problems.values()),
                'flip': args.flip, 'gallery': args.gallery, 'shots': args.shots, 'environment': environment}
        save_features(args.save_features, runs, data_path, meta)
        print(f'features written to {args.save_features}')
    setting = {'dataset': args.dataset, 'mode': args.mode, 'tvsearch': args.tvsearch, 'protocol': args.protocol,
               'flip': args.flip, 'gallery': args.gallery, 'shots': args.shots, 'trained_on': trained or None,
               'checkpoints': used, 'dataset_copy': copy, 'environment': environment,
               'embedding': embedding_report(*embedded, device), 'img_size': sizes[0], 'data_root': data_path}
    return setting, results, per_trial, titles, gaps, models


def note_other_versions(path, made_with, environment):
    """A note when checkpoint `path` was made under other major versions than this run's."""
    differ = major_differences(made_with, environment)
    if differ:
        print(f'note: {path} was made with {", ".join(differ)}: other major versions, whose kernels and defaults can '
              'move scores in the last digits', flush=True)


def print_trials(dataset, mode, problems, per_trial):
    print(rows_note(dataset, next(iter(problems.values())), has_middle(per_trial[0])))
    for result in per_trial:
        print(format_table(trial_title(dataset, result['trial'], problems[result['trial']], mode), result))


def score_saved(args, rerank, by_camera):
    """Score the features file of --from-features: (setting, trials, results, per_trial, {trial: Problem})."""
    features = Features(args.from_features)
    meta = features.meta
    environment = stamp()
    print(f'environment: {describe_environment(environment)}', flush=True)
    trials = (features.trials if args.trials is None
              else [features.trial(t) for t in parse_trials(args.trials, features.dataset)])
    print(f'scoring {args.from_features}: {features.dataset}, protocol {meta["protocol"]}, trials '
          f'{",".join(map(str, trials))} (no network, no images)', flush=True)
    problems, bank = saved_problems(features, trials)
    results = score_trials(problems, bank, rerank, by_camera)
    per_trial = summarise_trials(results)
    print_trials(features.dataset, meta['mode'], problems, per_trial)
    setting = {'dataset': features.dataset, 'mode': meta['mode'], 'tvsearch': meta['tvsearch'],
               'protocol': meta['protocol'], 'flip': meta.get('flip', False),
               'gallery': meta.get('gallery', 'random'), 'shots': meta.get('shots', 1), 'trained_on': None,
               'checkpoints': saved_checkpoints(meta, trials), 'dataset_copy': None, 'environment': environment}
    return setting, trials, results, per_trial, problems


def saved_checkpoints(meta, trials):
    """The results file's "checkpoints" of a features file: the paths it names and the trials each
    embedded (the file keeps no training arguments, hashes or stamps: null)."""
    models = dict(zip(meta['trials'], meta['trial_models']))
    return [{'path': path, 'trials': [t for t in trials if models.get(t) == k], 'args': None, 'sha256': None,
             'environment': None}
            for k, path in enumerate(meta['checkpoints']) if any(models.get(t) == k for t in trials)]


def plan_corruption(args):
    """--corrupt's cells and the sweep to resume, checked before anything is embedded: None without
    --corrupt, else (names, severities, the corruption setting, the results file read back or None)."""
    if args.corrupt is None:
        for flag, value in (('--severity', args.severity), ('--corrupt-seed', args.corrupt_seed or None)):
            if value is not None:
                raise ReIDError(f'{flag} applies to corrupted images: give --corrupt too')
        return None
    names, severities = parse_corruptions(args.corrupt), parse_severities(args.severity or 'all')
    if args.from_features or args.save_features:
        raise ReIDError('--corrupt embeds the corrupted images with the network, so it cannot be used with '
                        '--from-features or --save-features (the features file holds the clean images\' features)')
    versions = check_installed()
    previous = None
    if args.results and os.path.isfile(args.results):
        try:
            previous = load_json(args.results)
        except ReIDError:
            previous = None   # not a results file: replaced, as without --corrupt
    return names, severities, sweep_setting(names, severities, args.corrupt_seed, versions), previous


def run_corruption(args, plan, report, models, root, img_size):
    """The cells of --corrupt not done yet (`report`: the clean run's results file content; `root`
    the data root, `img_size` the test size), each embedded, scored, printed and written; then the
    side-by-side table (and for a sweep the corruption x severity tables). Returns the summary."""
    names, severities, setting, previous = plan
    todo_all = cells(names, severities, args.corrupt_seed, root)
    report['corruption'] = corruption_report(setting, img_size, {})
    done = {}
    if args.results:
        done = done_cells(previous, report, args.results)
        check_clean_scores(previous if done else None, report['mean'], args.results)
    done = {c.label: done[c.label] for c in todo_all if c.label in done}
    todo = [c for c in todo_all if c.label not in done]
    clean = report['mean']
    if done:
        print(f'resuming the sweep of {args.results}: {len(done)} of {len(todo_all)} cells done', flush=True)
    elif len(todo_all) > 1 and not args.results:
        print('note: without --results an interrupted sweep cannot resume', flush=True)
    print(f'corrupting the visible test images ({len(todo_all)} setting{"s" if len(todo_all) > 1 else ""}, seed '
          f'{args.corrupt_seed}) ...', flush=True)

    def write(cells_done, summary=None):
        if args.results:
            report['corruption'] = corruption_report(setting, img_size, cells_done, summary)
            write_results(args.results, report)

    def on_cell(label, cell, left):
        done[label] = cell
        write(done)
        n = len(done)
        print(f'[{n}/{len(todo_all)}] {label}: ALL Rank-1 {100 * cell["mean"]["ALL"]["rank1"]:.2f}% mAP '
              f'{100 * cell["mean"]["ALL"]["mAP"]:.2f}% (clean {100 * clean["ALL"]["rank1"]:.2f}% / '
              f'{100 * clean["ALL"]["mAP"]:.2f}%); {cell["images"]} images in {cell["seconds"]:.1f}s'
              + (f'; about {format_duration(left)} left' if n < len(todo_all) else ''), flush=True)

    run_cells(models, todo, report['dataset'], report['rerank'] and Rerank(**report['rerank']), on_cell)
    done = {c.label: done[c.label] for c in todo_all}
    summary = summarise_cells(done, clean)
    write(done, summary)
    trials = f'mean over {len(report["trials"])} trial{"s" if len(report["trials"]) > 1 else ""}'
    if len(done) > 1:
        for metric, word in (('rank1', 'Rank-1'), ('mAP', 'mAP')):
            print(format_corruption_grid(f'ALL {word} under corruption ({trials})', done, clean, 'ALL', metric))
        print(format_side_by_side(f'Clean and corrupted (the mean over all {len(done)} settings), {trials}',
                                  clean, summary['mean']))
    else:
        (label, cell), = done.items()
        print(format_side_by_side(f'Clean and corrupted ({label}), {trials}', clean, cell['mean']))
    return summary


def format_duration(seconds):
    return f'{seconds / 60:.0f} min' if seconds >= 90 else f'{seconds:.0f} s'


def main(argv=None):
    args = parse_args(argv)
    # Every input is checked before the first image is embedded.
    check_counts(args, {'--test-batch': 1, '--workers': 0})   # the image size: flags.image_side
    for flag, path in (('--results', args.results), ('--save-features', args.save_features)):
        if path:
            check_output_file(path, flag)
    plan = plan_corruption(args)
    rerank = Rerank(args.k1, args.k2, args.lambda_value) if args.rerank else None
    by_camera = {} if args.results or args.per_camera else None
    models = []
    if args.from_features:
        check_test_time_options(args)
        setting, trials, results, per_trial, titles = score_saved(args, rerank, by_camera)
        gaps = []
    else:
        trials = select_trials(args)
        check_test_time_options(args, args.dataset)
        if plan and args.results:   # a sweep with other settings is refused before anything is embedded
            done_cells(plan[3], {'dataset': args.dataset, 'mode': args.mode if dm.dataset_info(args.dataset).modes
                                 else None, 'tvsearch': args.tvsearch, 'protocol': args.protocol, 'flip': args.flip,
                                 'gallery': args.gallery, 'shots': args.shots, 'trials': trials,
                                 'rerank': rerank._asdict() if rerank else None,
                                 'corruption': {'setting': plan[2]}}, args.results, early=True)
        setting, results, per_trial, titles, gaps, models = embed_and_score(args, trials, rerank, by_camera)
    dataset, mode = setting['dataset'], setting['mode']
    mean, std = mean_scores(per_trial), std_scores(per_trial)
    others = sorted({m['dataset'] for m in setting['trained_on'] or () if m['dataset'] not in (dataset, 'unknown')})
    cross = f' (model trained on {", ".join(dm.DATASETS[d].name for d in others)})' if others else ''
    print(format_table(mean_title(dataset, titles, mode, setting['protocol']) + cross, mean), flush=True)
    if len(trials) > 1:
        print(format_spread(f'Spread over {len(trials)} trials: mean ± standard deviation', mean, std), flush=True)
    cameras = camera_report(by_camera) if by_camera else None
    if args.per_camera:
        if cameras is None:
            print(f'note: --per-camera: {dataset} has no camera numbers')
        for name in cameras or ():
            print(format_cameras(f'{name} per query camera (mean over {len(trials)} trial(s))', cameras, name))
    report = results_report(setting, trials, direction(dataset, next(iter(titles.values()))), mean, std,
                            per_trial, cmc_report(results), cameras, rerank, gaps)
    if args.results and plan is None:
        write_results(args.results, report)
        print(f'results written to {args.results}')
    if plan is not None:
        run_corruption(args, plan, report, models, setting['data_root'], setting['img_size'])
        if args.results:
            print(f'results written to {args.results}')
    return mean


if __name__ == '__main__':
    run_main(main)
