"""Results files of `test.py --results` compared in one table: combining the files of one run
(RegDB's per-split files), grouping runs that differ only in their seed, the paper's row, and the
table as Markdown, LaTeX or CSV (tables.py is the command line; results_file.py reads the files).

A row is the mean ± standard deviation over trials of one score (numpy's std, ddof 0, as test.py's
"std"). Files of one run (equal training arguments, checkpoint kind and test settings) pool their
trials; with `group_seeds`, runs whose training arguments differ only in `seed` form one row whose
values are the mean ± std over seeds of each seed's mean over its trials.
"""
import csv
import io
import json
import os
import re
from collections import namedtuple

import numpy as np

from data_manager import DATASETS
from ifalnet.flags import BOOKKEEPING
from ifalnet.results_file import read_results
from ifalnet.scoring import METRIC_HEADERS as HEADERS, METRIC_KEYS, SCORES
from utils import ReIDError, plural

# What a results file says about how it was tested: files that differ in any of these are other rows.
SETTINGS = ('dataset', 'mode', 'direction', 'tvsearch', 'protocol', 'flip', 'gallery', 'shots', 'rerank')
CHECKPOINT_KIND = re.compile(r'_(best|last|epoch_\d+)\.t$')

Run = namedtuple('Run', 'path report')               # one results file, as read
# values, std: {metric: fraction or None}; setting: how the row's files were tested (describe_setting)
Row = namedtuple('Row', 'label values std count over setting')


def setting(report):
    return {key: report.get(key) for key in SETTINGS}


def describe_setting(report):
    """'SYSU-MM01 all-search, infrared -> visible, protocol release' from a results file."""
    name = DATASETS[report['dataset']].name
    if DATASETS[report['dataset']].modes and report.get('mode'):
        name += f' {report["mode"]}-search'
    parts = [name] + [report[k] for k in ('direction',) if report.get(k)]
    parts += [f'protocol {report["protocol"]}'] if report.get('protocol') else []
    extras = [what for what, on in (('flip', report.get('flip')), ('re-ranking', report.get('rerank')),
                                    (f'{report.get("gallery")} gallery', report.get('gallery') not in (None, 'random')),
                                    (f'{report.get("shots")}-shot', report.get('shots') not in (None, 1))) if on]
    return ', '.join(parts + extras)


def run_config(report, group_seeds):
    """What identifies the run(s) of a results file, as comparable JSON text, or None when it cannot be
    told (a file without "checkpoints", a checkpoint without training arguments: its own row).
    Ignored: the bookkeeping arguments, `trial` (RegDB's split: the splits of one run combine; it does
    nothing for the other datasets), and with `group_seeds` the seed."""
    checkpoints = report.get('checkpoints')
    if not checkpoints or any(not isinstance(c, dict) or not isinstance(c.get('args'), dict) for c in checkpoints):
        return None
    ignored = set(BOOKKEEPING) | {'trial'} | ({'seed'} if group_seeds else set())
    configs = set()
    for c in checkpoints:
        args = {k: v for k, v in c['args'].items() if k not in ignored}
        kind = CHECKPOINT_KIND.search(os.path.basename(str(c.get('path', ''))))
        configs.add(json.dumps({'args': args, 'checkpoint': kind.group(1) if kind else None}, sort_keys=True))
    return json.dumps({'setting': setting(report), 'runs': sorted(configs)}, sort_keys=True)


def seeds(report):
    """The training seeds of a file's checkpoints (None where unknown)."""
    return sorted({c['args'].get('seed') for c in report.get('checkpoints') or () if isinstance(c.get('args'), dict)},
                  key=str) or [None]


def common_label(paths):
    """The file name (without .json) of one file; of several, their common start and end around '*'."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == 1:
        return stems[0]
    start = os.path.commonprefix(stems)
    end = os.path.commonprefix([s[len(start):][::-1] for s in stems])[::-1]
    return f'{start}*{end}'


def trial_scores(files, score):
    """The per-trial scores of `score` over the files of one run, with their trials; two files that
    score the same trial of the same run are refused."""
    seen, entries = {}, []
    for run in files:
        for entry in run.report['per_trial']:
            trial = entry.get('trial')
            if trial in seen:
                raise ReIDError(f'{seen[trial]} and {run.path} both score trial {trial} of the same run (same '
                                'training arguments and test settings): give one of them')
            seen[trial] = run.path
            entries.append(entry[score])
    return entries


def spread(values):
    """{metric: mean}, {metric: std} of a list of {metric: value}."""
    return ({k: float(np.mean([v[k] for v in values])) for k in METRIC_KEYS},
            {k: float(np.std([v[k] for v in values])) for k in METRIC_KEYS})


def group_runs(runs, group_seeds=False):
    """The runs' files in rows: [[[files of one seed's run], ...], ...] in the order of first appearance.
    Files of one run combine (RegDB: one file per split); with `group_seeds` a row holds every seed."""
    rows, index = [], {}
    for k, run in enumerate(runs):
        config = run_config(run.report, group_seeds)
        key = ('file', k) if config is None else config
        if key not in index:
            index[key] = len(rows)
            rows.append({})
        rows[index[key]].setdefault(json.dumps(seeds(run.report) if group_seeds else [], default=str), []).append(run)
    return [list(units.values()) for units in rows]


def make_rows(runs, score='ALL', group_seeds=False, labels=None):
    """The table's rows: one per run (or per configuration with `group_seeds`)."""
    groups = group_runs(runs, group_seeds)
    names = [common_label([run.path for unit in group for run in unit]) for group in groups]
    if labels is not None and len(labels) != len(groups):
        listed = '; '.join(names)
        raise ReIDError(f'--labels gives {len(labels)} names for {plural(len(groups), "row")} ({listed}): one '
                        'name per row, in this order')
    rows = []
    for label, group in zip(labels or names, groups):
        units = [trial_scores(unit, score) for unit in group]
        if len(units) == 1:
            values, std = spread(units[0])
            over = plural(len(units[0]), 'trial')
            count = len(units[0])
        else:
            values, std = spread([spread(unit)[0] for unit in units])
            sizes = {len(unit) for unit in units}
            over = plural(len(units), 'seed') + (f' x {plural(sizes.pop(), "trial")}' if len(sizes) == 1 else
                                                  ' (' + '/'.join(str(len(u)) for u in units) + ' trials)')
            count = len(units)
        rows.append(Row(label, values, std if count > 1 else dict.fromkeys(METRIC_KEYS), count, over,
                        describe_setting(group[0][0].report)))
    return rows


def check_runs(runs):
    """One dataset in one table."""
    datasets = {}
    for run in runs:
        datasets.setdefault(run.report['dataset'], run.path)
    if len(datasets) > 1:
        shown = ', '.join(f'{DATASETS[d].name} ({path})' for d, path in datasets.items())
        raise ReIDError(f'the results files are of different datasets: {shown}; make one table per dataset')


def paper_row(runs):
    """The paper's published row for the dataset of `runs` (Rank-1 and mAP; the rest blank); refused
    when a file was tested in another setting than the paper's number."""
    dataset = DATASETS[runs[0].report['dataset']]
    rank1, mAP, where = dataset.paper
    for run in runs:
        report = run.report
        # The paper's number is of SYSU-MM01's all-search mode and of RegDB's visible -> thermal direction.
        other = ((dataset.modes and report.get('mode', 'all') != 'all') or
                 (dataset.split_trials and report.get('direction', where) != where))
        if other:
            raise ReIDError(f'--paper: the paper\'s {dataset.name} row is {where}, but {run.path} is '
                            f'{describe_setting(report)}; leave out --paper or those files')
    label = 'IFALNet (paper' + (f', {where})' if where else ')')
    values = {'rank1': rank1, 'mAP': mAP}
    setting = f'{dataset.name} {where} (the paper)' if where else f'{dataset.name} (the paper)'
    return Row(label, {k: values.get(k) for k in METRIC_KEYS}, dict.fromkeys(METRIC_KEYS), None, 'published', setting)


def caption(runs, score, group_seeds):
    settings = list(dict.fromkeys(describe_setting(run.report) for run in runs))
    over = 'over trials (over seeds where a row groups several)' if group_seeds else 'over trials'
    return f'{"; ".join(settings)}: {score} score, %, mean ± std {over}'


def cell(value, std, plus='±'):
    if value is None:
        return ''
    return f'{100 * value:.2f}' + ('' if std is None else f' {plus} {100 * std:.2f}')


def mixed_settings(rows):
    """Whether the runs' rows (the paper's aside) were tested in more than one setting (SYSU-MM01's
    all-search and indoor-search, RegDB's two directions, ...): then every row names its own."""
    return len({row.setting for row in rows if row.count is not None}) > 1


def markdown(rows, title):
    escape = lambda text: str(text).replace('|', r'\|')
    mixed = mixed_settings(rows)
    lines = [title, '', '| run | ' + ('setting | ' if mixed else '') + ' | '.join(HEADERS) + ' | over |',
             '|---|' + ('---|' if mixed else '') + '---:|' * len(HEADERS) + '---|']
    for row in rows:
        cells = ([escape(row.setting)] if mixed else []) + [cell(row.values[k], row.std[k]) for k in METRIC_KEYS]
        lines.append(f'| {escape(row.label)} | ' + ' | '.join(cells) + f' | {row.over} |')
    return '\n'.join(lines) + '\n'


LATEX_SPECIAL = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_',
                 '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}', '±': r'$\pm$',
                 '<': r'\textless{}', '>': r'\textgreater{}'}


def latex_escape(text):
    """`text` as LaTeX text: its special characters escaped, '->' as an arrow (a bare '>' is not one)."""
    parts = str(text).split('->')
    return r'$\rightarrow$'.join(''.join(LATEX_SPECIAL.get(ch, ch) for ch in part) for part in parts)


def latex(rows, title):
    mixed = mixed_settings(rows)
    lines = [f'% {latex_escape(title)}', r'\begin{tabular}{l' + ('l' if mixed else '') + 'r' * len(HEADERS) + 'l}',
             r'\hline', ' & '.join(['Run'] + (['Setting'] if mixed else []) + [f'{h} (\\%)' for h in HEADERS] + ['Over'])
             + r' \\', r'\hline']
    for row in rows:
        cells = [cell(row.values[k], row.std[k], r'$\pm$') for k in METRIC_KEYS]
        setting = [latex_escape(row.setting)] if mixed else []
        lines.append(' & '.join([latex_escape(row.label)] + setting + cells + [latex_escape(row.over)]) + r' \\')
    lines += [r'\hline', r'\end{tabular}']
    return '\n'.join(lines) + '\n'


def csv_text(rows, score):
    """Full-precision percentages; an empty std where a row has one value (or is the paper's); the last
    column, every row's setting."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['run', 'score', 'count', 'over'] + [c for k in METRIC_KEYS for c in (k, f'{k}_std')] + ['setting'])
    for row in rows:
        pct = lambda v: '' if v is None else repr(100 * v)
        writer.writerow([row.label, score, '' if row.count is None else row.count, row.over] +
                        [c for k in METRIC_KEYS for c in (pct(row.values[k]), pct(row.std[k]))] + [row.setting])
    return out.getvalue()


def table(paths, score='ALL', group_seeds=False, labels=None, paper=False, kind='markdown'):
    """The table of the results files `paths` as text: kind 'markdown', 'latex' or 'csv'."""
    if score not in SCORES:
        raise ReIDError(f'--score {score!r} is not one of {", ".join(SCORES)}')
    runs = [Run(path, read_results(path, score)) for path in paths]
    check_runs(runs)
    rows = make_rows(runs, score, group_seeds, labels)
    if paper:
        rows.append(paper_row(runs))
    if kind == 'csv':
        return csv_text(rows, score)
    title = caption(runs, score, group_seeds)
    return latex(rows, title) if kind == 'latex' else markdown(rows, title)
