"""What test.py and train.py's validation print: the tables of scores (`format_table`), the spread
over trials (`format_spread`), the per-camera table (`format_cameras`), and what their titles and
rows say (`trial_title`, `mean_title`, `rows_note`, `direction`). Computing is in scoring.py.
"""
from data_manager import dataset_info
from ifalnet.problems import modality_word
from ifalnet.scoring import METRIC_HEADERS, METRIC_KEYS, has_middle, present_scores
from utils import plural

NO_MIDDLE_NOTE = ('  (no middle modality: VIS-MR FC, MIS-IR FC, MIS-MR FC and ALL FC do not exist; '
                  'ALL = bn + pool of the original features)')


def direction(dataset, problem):
    """'infrared -> visible': the modality of the queries, then the gallery's."""
    return f'{modality_word(dataset, problem.query.modal)} -> {modality_word(dataset, problem.gallery.modal)}'


def problem_name(dataset, problem, mode='all'):
    """What a table scores, for its title: 'SYSU-MM01 all-search, infrared -> visible'."""
    name = dataset_info(dataset).name
    if dataset_info(dataset).modes:   # SYSU-MM01's all-search and indoor-search
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
    word = 'split' if dataset_info(dataset).split_trials else 'trial'
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


def format_side_by_side(title, clean, corrupted):
    """Rank-1, mAP and mINP of every score, clean and corrupted side by side, and the corrupted
    score's relative drop in Rank-1 and mAP."""
    metrics = (('Rank-1', 'rank1'), ('mAP', 'mAP'), ('mINP', 'mINP'))
    lines = [title, f'  {"score":<10}' + ''.join(f'{h + " clean":>13}{"corrupted":>11}' for h, _ in metrics)
             + f'{"Rank-1 drop":>13}{"mAP drop":>10}']
    for name in present_scores(corrupted):
        cells = ''.join(f'{100 * clean[name][k]:12.2f}%{100 * corrupted[name][k]:10.2f}%' for _, k in metrics)
        drops = [relative_drop(clean[name][k], corrupted[name][k]) for k in ('rank1', 'mAP')]
        lines.append(f'  {name:<10}{cells}{drops[0]:>13}{drops[1]:>10}')
    return '\n'.join(lines)


def relative_drop(clean, corrupted):
    """'12.3%': (clean - corrupted) / clean, or '-' for a clean score of 0."""
    return f'{100 * (clean - corrupted) / clean:.1f}%' if clean else '-'


def format_corruption_grid(title, cells, clean, score='ALL', metric='rank1'):
    """One value (`metric` of `score`, %) per corruption and severity from the cells {label: cell} of
    a sweep, with each row's mean, each severity's mean over the corruptions, the mean over all cells
    (the benchmark's headline), the clean value and the headline's relative drop from it."""
    severities = sorted({cell['severity'] for cell in cells.values()}, key=str)
    names = list(dict.fromkeys(cell['corruption'] for cell in cells.values()))
    value = {(cell['corruption'], cell['severity']): 100 * cell['mean'][score][metric] for cell in cells.values()}
    width = max(len(n) for n in names + ['mean over all']) + 2
    lines = [title, f'  {"":<{width}}' + ''.join(f'{"severity " + str(s):>12}' for s in severities) + f'{"mean":>10}']
    for name in names:
        row = [value.get((name, s)) for s in severities]
        known = [v for v in row if v is not None]
        lines.append(f'  {name:<{width}}' + ''.join(f'{v:11.2f}%' if v is not None else f'{"-":>12}' for v in row)
                     + f'{sum(known) / len(known):9.2f}%')
    columns = [[value[(n, s)] for n in names if (n, s) in value] for s in severities]
    overall = sum(value.values()) / len(value)
    lines.append(f'  {"mean":<{width}}' + ''.join(f'{sum(c) / len(c):11.2f}%' for c in columns) + f'{overall:9.2f}%')
    lines.append(f'  mean over all {len(value)} cells {overall:.2f}%, clean {100 * clean[score][metric]:.2f}%, '
                 f'relative drop {relative_drop(100 * clean[score][metric], overall)}')
    return '\n'.join(lines)
