"""tables.py: the results files of test.py --results as Markdown, LaTeX and CSV tables, runs of one
configuration combined (RegDB's per-split files) and grouped over seeds; and what the results file
records about its checkpoints. Real results files of tiny RegDB models (32x16, CPU)."""
import csv
import io
import json
import re
import statistics

import numpy as np
import pytest
import torch

import tables
import test as test_script
import train as train_script
from ifalnet import run_comparison as result_tables
from ifalnet.checkpoints import save_checkpoint, training_args
from ifalnet.scoring import METRIC_KEYS, SCORES, mean_scores, std_scores
from ifalnet.weights_folder import sha256_of
from model import embed_net
from utils import ReIDError

FAST = ['--img_h', '32', '--img_w', '16', '--workers', '0', '--test-batch', '32', '--gpu', '']


def train_args(seed, trial, *extra):
    return vars(train_script.parse_args(['--dataset', 'regdb', '--seed', str(seed), '--trial', str(trial),
                                         '--img_h', '32', '--img_w', '16', '--pretrained', 'none', *extra]))


@pytest.fixture(scope='module')
def results(tmp_path_factory, regdb_root):
    """Results files: a real one of test.py (one checkpoint, RegDB splits 1 and 2), and made ones in its
    format: seed 0 as one file per split, seed 1 as one file of both splits (trained with other
    bookkeeping flags: workers, run name), and a seed-0 run with another learning rate."""
    tmp = tmp_path_factory.mktemp('tables')
    torch.manual_seed(0)
    save_checkpoint({'net': embed_net(5).state_dict(), 'epoch': 3, 'args': train_args(0, 1)}, tmp / 'real_best.t')
    files = {'real': tmp / 'real.json'}
    test_script.main(['--dataset', 'regdb', '--data-path', str(regdb_root), '--trials', '1,2', '--resume',
                      str(tmp / 'real_best.t'), '--results', str(files['real']), *FAST])
    template = load(files['real'])
    rng = np.random.default_rng(0)
    for name, seed, trials, extra in (('regdb_seed_0_trial_1', 0, (1,), ()), ('regdb_seed_0_trial_2', 0, (2,), ()),
                                      ('regdb_seed_1', 1, (1, 2), ('--workers', '0', '--run-name', 'mine_1')),
                                      ('regdb_lr', 0, (1,), ('--lr', '0.05'))):
        per_trial = [{'trial': t, **{score: dict(zip(METRIC_KEYS, rng.uniform(size=6).tolist())) for score in SCORES}}
                     for t in trials]
        checkpoints = [{'path': str(tmp / f'{name}_trial_{t}_best.t'), 'trials': [t],
                        'args': json.loads(json.dumps(train_args(seed, t, *extra)))} for t in trials]
        files[name] = tmp / f'{name}.json'
        files[name].write_text(json.dumps({**template, 'trials': list(trials), 'per_trial': per_trial,
                                           'mean': mean_scores(per_trial), 'std': std_scores(per_trial),
                                           'checkpoints': checkpoints}))
    return tmp, files


def load(path):
    return json.loads(path.read_text())


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def by_hand(values):
    """Mean and population standard deviation, as percentages (the statistics module, not numpy)."""
    return 100 * statistics.fmean(values), 100 * statistics.pstdev(values)


def test_results_file_records_each_checkpoint_and_its_training_arguments(results):
    tmp, files = results
    report = load(files['real'])
    assert report['checkpoints'] == [{'path': str(tmp / 'real_best.t'), 'trials': [1, 2],
                                      'args': json.loads(json.dumps(train_args(0, 1))),
                                      'sha256': sha256_of(tmp / 'real_best.t'), 'environment': None}]
    assert report['checkpoints'][0]['args']['lr_steps'] == [20, 60, 90]   # a tuple, as JSON
    assert training_args({'net': {}, 'epoch': 5}) is None                # a release checkpoint: null
    # a features file names its checkpoints but keeps no training arguments, hashes or stamps
    meta = {'checkpoints': ['a.t', 'b.t'], 'trials': [1, 2, 3], 'trial_models': [0, 1, 1]}
    assert test_script.saved_checkpoints(meta, [2, 3]) == [{'path': 'b.t', 'trials': [2, 3], 'args': None,
                                                           'sha256': None, 'environment': None}]


def test_rows_are_runs_with_the_files_numbers(results, capsys):
    _, files = results
    paths = [str(p) for k, p in files.items() if k != 'real']
    rows = csv_rows(tables.main([*paths, '--csv']))
    assert capsys.readouterr().out == tables.main([*paths, '--csv']) and len(rows) == 3
    # RegDB: seed 0's two per-split files are one row, over the two splits' trials
    assert [r['run'] for r in rows] == ['regdb_seed_0_trial_*', 'regdb_seed_1', 'regdb_lr']
    assert [r['over'] for r in rows] == ['2 trials', '2 trials', '1 trial']
    for score in ('ALL', 'VIS-IR FC'):
        rows = csv_rows(tables.main([*paths, '--csv', '--score', score]))
        split = [load(files[f'regdb_seed_0_trial_{t}'])['per_trial'][0][score] for t in (1, 2)]
        one, lr = load(files['regdb_seed_1']), load(files['regdb_lr'])
        for key in METRIC_KEYS:
            mean, std = by_hand([s[key] for s in split])
            assert float(rows[0][key]) == pytest.approx(mean, abs=1e-12)
            assert float(rows[0][f'{key}_std']) == pytest.approx(std, abs=1e-12)
            # a file of its own: exactly test.py's mean and std over its trials
            assert float(rows[1][key]) == pytest.approx(100 * one['mean'][score][key], rel=1e-15)
            assert float(rows[1][f'{key}_std']) == pytest.approx(100 * one['std'][score][key], rel=1e-15)
            assert float(rows[2][key]) == pytest.approx(100 * lr['mean'][score][key], rel=1e-15)
            assert rows[2][f'{key}_std'] == ''   # one trial: no spread
        assert {r['score'] for r in rows} == {score}


def test_a_real_results_files_row_is_its_mean_and_std(results):
    _, files = results
    report = load(files['real'])
    for score in SCORES:
        row, = csv_rows(tables.main([str(files['real']), '--csv', '--score', score]))
        assert row['run'] == 'real' and row['over'] == '2 trials'
        for key in METRIC_KEYS:
            assert float(row[key]) == pytest.approx(100 * report['mean'][score][key], rel=1e-15)
            assert float(row[f'{key}_std']) == pytest.approx(100 * report['std'][score][key], rel=1e-15, abs=1e-15)


def test_group_seeds_averages_each_seeds_mean(results, tmp_path):
    _, files = results
    paths = [str(p) for k, p in files.items() if k != 'real']
    rows = csv_rows(tables.main([*paths, '--csv', '--group-seeds']))
    # the learning rate differs, so that run stays apart; workers and run name do not count
    assert [r['run'] for r in rows] == ['regdb_seed_*', 'regdb_lr']
    assert rows[0]['over'] == '2 seeds x 2 trials' and rows[0]['count'] == '2'
    seed0 = [load(files[f'regdb_seed_0_trial_{t}'])['per_trial'][0]['ALL'] for t in (1, 2)]
    seed1 = load(files['regdb_seed_1'])['mean']['ALL']
    for key in METRIC_KEYS:
        means = [statistics.fmean(s[key] for s in seed0), seed1[key]]
        mean, std = by_hand(means)
        assert float(rows[0][key]) == pytest.approx(mean, abs=1e-12)
        assert float(rows[0][f'{key}_std']) == pytest.approx(std, abs=1e-12)
    # the other spelling of the flag
    assert tables.main([*paths, '--csv', '--group_seeds']) == tables.main([*paths, '--csv', '--group-seeds'])
    # another checkpoint of the same run (its _last.t instead of its _best.t) is another row
    last = load(files['regdb_seed_1'])
    last['checkpoints'] = [{**c, 'path': c['path'].replace('_best.t', '_last.t')} for c in last['checkpoints']]
    (tmp_path / 'regdb_last.json').write_text(json.dumps(last))
    rows = csv_rows(tables.main([*paths, str(tmp_path / 'regdb_last.json'), '--csv', '--group-seeds']))
    assert [r['run'] for r in rows] == ['regdb_seed_*', 'regdb_lr', 'regdb_last']


def markdown_cells(line):
    return [c.strip() for c in re.split(r'(?<!\\)\|', line.strip())[1:-1]]


def test_markdown_latex_and_csv_parse(results, tmp_path):
    _, files = results
    paths = [str(p) for k, p in files.items() if k != 'real']
    labels = ['50% a_b', 'x|y & z', 'lr #2']
    text = tables.main([*paths, '--labels', *labels, '--paper'])
    lines = text.splitlines()
    assert lines[0] == ('RegDB, visible -> thermal, protocol release: ALL score, %, mean ± std over trials') and lines[1] == ''
    table = [markdown_cells(line) for line in lines[2:]]
    assert table[0] == ['run', 'Rank-1', 'Rank-5', 'Rank-10', 'Rank-20', 'mAP', 'mINP', 'over']
    assert all(set(c) <= set('-:') for c in table[1]) and {len(row) for row in table} == {8}
    assert [row[0] for row in table[2:]] == ['50% a_b', r'x\|y & z', 'lr #2', 'IFALNet (paper, visible -> thermal)']
    assert re.fullmatch(r'\d+\.\d\d ± \d+\.\d\d', table[2][1]) and re.fullmatch(r'\d+\.\d\d', table[4][1])
    assert table[5][1:] == ['93.90', '', '', '', '89.90', '', 'published']
    one = load(files['regdb_seed_1'])['mean']['ALL']
    assert table[3][5] == f'{100 * one["mAP"]:.2f} ± {100 * load(files["regdb_seed_1"])["std"]["ALL"]["mAP"]:.2f}'

    tex = tables.main([*paths, '--labels', *labels, '--paper', '--latex'])
    body = tex.splitlines()
    assert body[0].startswith('% ') and tex.count(r'\begin{tabular}') == tex.count(r'\end{tabular}') == 1
    columns = len(re.search(r'\\begin\{tabular\}\{(\w+)\}', tex).group(1))
    rows = [line for line in body if line.endswith(r'\\')]
    assert len(rows) == 5 and all(len(re.split(r'(?<!\\)&', row)) == columns for row in rows)
    assert '±' not in tex and r'$\pm$' in tex
    assert not any(re.search(r'(?<!\\)%', line) for line in body[1:])            # every % escaped
    assert not any(re.search(r'(?<!\\)[_#]', line) for line in body[1:])
    assert r'RegDB, visible $\rightarrow$ thermal' in tex and '>' not in tex
    assert r'50\% a\_b' in tex and r'lr \#2' in tex and r'x|y \& z' in tex
    assert tex.count('{') == tex.count('}')

    rows = csv_rows(tables.main([*paths, '--labels', *labels, '--paper', '--csv']))
    assert [r['run'] for r in rows] == [*labels, 'IFALNet (paper, visible -> thermal)']
    assert rows[-1]['rank1'] == repr(100 * 0.939) and rows[-1]['rank5'] == rows[-1]['rank1_std'] == ''
    # --out writes the same text, atomically
    out = tmp_path / 'table.tex'
    assert tables.main([*paths, '--labels', *labels, '--paper', '--latex', '--out', str(out)]) == out.read_text() == tex


def test_bad_input_is_refused_by_name(results, tmp_path):
    _, files = results
    one = str(files['regdb_seed_1'])
    out = tmp_path / 'x.md'
    def write(name, value):
        (tmp_path / name).write_text(json.dumps(value))
        return str(tmp_path / name)
    report = load(files['regdb_seed_1'])
    cases = [
        ([str(tmp_path / 'none.json')], 'results file not found: .*none.json'),
        ([write('list.json', [1, 2])], r'list.json is not a results file of test.py --results'),
        ([write('empty.json', {**report, 'per_trial': []})], 'empty.json is not a results file'),
        ([write('partial.json', {**report, 'per_trial': [{'trial': 1, 'ALL': {'rank1': 0.5}}]})],
         'partial.json: a "per_trial" entry lacks the ALL scores'),
        ([one, write('sysu.json', {**report, 'dataset': 'sysu', 'mode': 'all'})],
         r'different datasets: RegDB \(.*regdb_seed_1.json\), SYSU-MM01 \(.*sysu.json\)'),
        ([one, one], 'regdb_seed_1.json and .*regdb_seed_1.json both score trial 1 of the same run'),
        ([one, '--labels', 'a', 'b'], r'--labels gives 2 names for 1 row \(regdb_seed_1\)'),
        ([write('tv.json', {**report, 'direction': 'thermal -> visible', 'tvsearch': True}), '--paper'],
         r"--paper: the paper's RegDB row is visible -> thermal, but .*tv.json is RegDB, thermal -> visible"),
        ([write('indoor.json', {**report, 'dataset': 'sysu', 'mode': 'indoor'}), '--paper'],
         "the paper's SYSU-MM01 row is all-search, but .*indoor.json is SYSU-MM01 indoor-search"),
    ]
    (tmp_path / 'bad.json').write_text('{not json')
    cases.append(([str(tmp_path / 'bad.json')], 'cannot read .*bad.json as JSON'))
    for argv, message in cases:
        with pytest.raises(ReIDError, match=message):
            tables.main([*argv, '--out', str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit):
        tables.main([one, '--latex', '--csv'])


def test_runs_whose_arguments_are_unknown_stay_apart(results, tmp_path):
    _, files = results
    report = load(files['regdb_seed_1'])
    paths = []
    for name, trial in (('a', 1), ('b', 2)):   # release checkpoints (no arguments), older files (no key)
        paths.append(tmp_path / f'{name}.json')
        kept = {**report, 'per_trial': [report['per_trial'][trial - 1]], 'trials': [trial]}
        paths[-1].write_text(json.dumps({**kept, 'checkpoints': [{'path': 'x.t', 'trials': [trial], 'args': None}]}
                                        if name == 'a' else {k: v for k, v in kept.items() if k != 'checkpoints'}))
    rows = csv_rows(tables.main([*map(str, paths), '--csv', '--group-seeds']))
    assert [r['run'] for r in rows] == ['a', 'b']


def test_a_network_without_the_middle_modality_has_its_two_scores(results, tmp_path):
    """A --no-middle run's results file holds VIS-IR FC and ALL only: those make rows, the others are refused."""
    _, files = results
    report = load(files['regdb_seed_1'])
    kept = [{k: v for k, v in entry.items() if k in ('trial', 'VIS-IR FC', 'ALL')} for entry in report['per_trial']]
    path = tmp_path / 'baseline.json'
    path.write_text(json.dumps({**report, 'per_trial': kept}))
    for score in ('ALL', 'VIS-IR FC'):
        row, = csv_rows(result_tables.table([str(path)], score=score, kind='csv'))
        mean, std = by_hand([entry[score]['rank1'] for entry in kept])
        assert float(row['rank1']) == pytest.approx(mean) and float(row['rank1_std']) == pytest.approx(std)
    with pytest.raises(ReIDError, match=r'baseline.json has no MIS-IR FC scores \(it has VIS-IR FC, ALL; a network '
                                        r'without the middle modality has VIS-IR FC and ALL only\)'):
        result_tables.table([str(path)], score='MIS-IR FC')


def test_rows_of_several_settings_say_which_is_which(results, tmp_path):
    """All-search and indoor-search rows (or two directions) in one table: every row names its setting, in
    every format; the CSV always does."""
    _, files = results
    report = load(files['regdb_seed_0_trial_1'])
    other = tmp_path / 'thermal_to_visible.json'
    other.write_text(json.dumps({**report, 'direction': 'thermal -> visible', 'tvsearch': True}))
    paths = [str(files['regdb_seed_0_trial_1']), str(other)]
    table = [markdown_cells(line) for line in tables.main(paths).splitlines()[2:]]
    assert table[0][:2] == ['run', 'setting'] and {len(row) for row in table} == {9}
    assert [row[1] for row in table[2:]] == ['RegDB, visible -> thermal, protocol release',
                                             'RegDB, thermal -> visible, protocol release']
    tex = tables.main([*paths, '--latex'])
    assert r'Run & Setting & Rank-1' in tex and r'RegDB, thermal $\rightarrow$ visible, protocol release' in tex
    rows = csv_rows(tables.main([*paths, '--csv']))
    assert [r['setting'] for r in rows] == [row[1] for row in table[2:]]
    # one setting: no column in Markdown (the caption says it), the CSV names it anyway
    one = [markdown_cells(line) for line in tables.main(paths[:1]).splitlines()[2:]]
    assert one[0][1] == 'Rank-1' and csv_rows(tables.main([*paths[:1], '--csv']))[0]['setting'] == table[2][1]


def synthetic_report(dataset='regdb'):
    """A results file's content as test.py writes it, with made-up scores (no training)."""
    scores = {'rank1': 0.5, 'rank5': 0.625, 'rank10': 0.75, 'rank20': 0.875, 'mAP': 0.375, 'mINP': 0.25}
    return {'dataset': dataset, 'mode': None, 'direction': 'visible -> thermal', 'tvsearch': False,
            'protocol': 'release', 'flip': False, 'gallery': 'random', 'shots': 1, 'trials': [1, 2],
            'mean': {'ALL': dict(scores)}, 'std': {'ALL': dict.fromkeys(scores, 0.0)},
            'per_trial': [{'trial': 1, 'ALL': dict(scores)}, {'trial': 2, 'ALL': dict(scores)}],
            'cmc': {'mean': {'ALL': [0.5] * 20}, 'per_trial': [{'trial': t, 'ALL': [0.5] * 20} for t in (1, 2)]},
            'per_camera': None, 'rerank': None, 'trained_on': None,
            'checkpoints': [{'path': 'm_last.t', 'trials': [1, 2], 'args': {'seed': 0}}]}


@pytest.mark.parametrize('case', ['nan', 'inf', 'huge', 'negative', 'above one', 'text', 'bool', 'std nan',
                                  'cmc', 'camera', 'trial', 'dataset', 'settings', 'checkpoints', 'depth',
                                  'recursion'])
def test_results_files_are_checked_value_by_value(tmp_path, case, capsys):
    """NaN, inf, 1e300, negatives and values above 1 anywhere (Rank-k, mAP, mINP, their spreads, the CMC,
    per camera), a wrong type at any level and JSON nested too deeply are one line naming the key."""
    report = synthetic_report()
    path = tmp_path / 'r.json'
    path.write_text(json.dumps(report))
    assert '| r | 50.00 ± 0.00 | 62.50 ± 0.00 |' in tables.main([str(path)])   # the untouched file is a row
    expected = 'a fraction within [0, 1] (a results file of test.py --results)'
    edit, message = {
        'nan': (lambda r: r['per_trial'][1]['ALL'].update(mAP=float('nan')), f'per_trial[1].ALL.mAP is nan; expected {expected}'),
        'inf': (lambda r: r['per_trial'][0]['ALL'].update(rank1=float('inf')), f'per_trial[0].ALL.rank1 is inf; expected {expected}'),
        'huge': (lambda r: r['per_trial'][0]['ALL'].update(mINP=1e300), f'per_trial[0].ALL.mINP is 1e+300; expected {expected}'),
        'negative': (lambda r: r['mean']['ALL'].update(rank5=-0.25), f'mean.ALL.rank5 is -0.25; expected {expected}'),
        'above one': (lambda r: r['per_trial'][0]['ALL'].update(rank20=1.5), f'per_trial[0].ALL.rank20 is 1.5; expected {expected}'),
        'text': (lambda r: r['per_trial'][0]['ALL'].update(rank10='0.75'), f'per_trial[0].ALL.rank10 is "0.75"; expected {expected}'),
        'bool': (lambda r: r['per_trial'][0]['ALL'].update(rank1=True), f'per_trial[0].ALL.rank1 is true; expected {expected}'),
        'std nan': (lambda r: r['std']['ALL'].update(mAP=float('nan')), f'std.ALL.mAP is nan; expected {expected}'),
        'cmc': (lambda r: r['cmc']['mean']['ALL'].__setitem__(3, 7), f'cmc.mean.ALL[3] is 7; expected {expected}'),
        'camera': (lambda r: r.update(per_camera={'ALL': {'1': {'rank1': 0.5, 'mAP': -1, 'mINP': 0.1, 'queries': 3,
                                                               'trials': 1}}}),
                   f'per_camera.ALL.1.mAP is -1; expected {expected}'),
        'trial': (lambda r: r['per_trial'][0].update(trial=[1]), 'per_trial[0].trial is [1]; expected a trial number'),
        'dataset': (lambda r: r.update(dataset=['regdb']), 'is not a results file of test.py --results'),
        'settings': (lambda r: r.update(flip='yes'), 'flip is "yes"; expected true, false or null'),
        'checkpoints': (lambda r: r.update(checkpoints=[{'path': 'm', 'args': [1]}]),
                        r'checkpoints[0].args is [1]; expected an object of training arguments or null'),
        'depth': (lambda r: r['checkpoints'][0]['args'].update(deep=json.loads('[' * 500 + ']' * 500)),
                  'r.json nests lists and objects more than 16 levels deep'),
        'recursion': (None, 'cannot read .*r.json: its JSON is nested too deeply'),
    }[case]
    if edit is None:
        path.write_text('[' * 100_000 + ']' * 100_000)
    else:
        edit(report)
        path.write_text(json.dumps(report))
    with pytest.raises(ReIDError, match=re.escape(message) if edit else message):
        tables.main([str(path), '--out', str(tmp_path / 't.md')])
    assert not (tmp_path / 't.md').exists()
