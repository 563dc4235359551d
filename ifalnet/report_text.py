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
