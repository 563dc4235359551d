"""Results files of `test.py --results` as one table: a row per run, Rank-1, Rank-5, Rank-10, Rank-20,
mAP and mINP as mean ± std over trials (over seeds with --group-seeds), as Markdown, LaTeX or CSV.

    python tables.py sysu_seed_0.json sysu_seed_1.json --labels "seed 0" "seed 1" --paper
    python tables.py regdb_seed_*_trial_*.json --group-seeds --latex --out regdb.tex

This is the command line; grouping and formatting live in ifalnet/run_comparison.py, reading the
files in ifalnet/results_file.py.
"""
from ifalnet.atomic import atomic_write
from ifalnet.flags import add_flag, make_parser
from ifalnet.interruption import run_main
from ifalnet.output_paths import check_output_file
from ifalnet.run_comparison import table
from ifalnet.scoring import SCORES


def parse_args(argv=None):
    parser = make_parser("A table of test.py's results files: one row per run, mean ± std over trials.")
    parser.add_argument('results', nargs='+', metavar='RESULTS.json', help='results files of test.py --results')
    add_flag(parser, '--score', default='ALL', choices=SCORES, metavar='SCORE',
             help=f'the score the table shows: {", ".join(SCORES)} (the paper reports ALL)')
    add_flag(parser, '--labels', nargs='+', default=None, metavar='NAME',
             help='row names, one per row in order (default: the file names; a row of several files: their '
                  'common part around "*")')
    add_flag(parser, '--group-seeds', action='store_true',
             help='one row for runs whose training arguments differ only in --seed: mean ± std over seeds')
    add_flag(parser, '--paper', action='store_true',
             help="add the paper's published row for the dataset (Rank-1 and mAP)")
    kind = parser.add_mutually_exclusive_group()
    add_flag(kind, '--latex', action='store_true', help='a LaTeX tabular instead of Markdown')
    add_flag(kind, '--csv', action='store_true', help='CSV (full-precision percentages) instead of Markdown')
    add_flag(parser, '--out', default=None, metavar='FILE', help='write the table here instead of printing it')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.out:
        check_output_file(args.out, '--out')
    kind = 'latex' if args.latex else 'csv' if args.csv else 'markdown'
    text = table(args.results, args.score, args.group_seeds, args.labels, args.paper, kind)
    if args.out:
        atomic_write(args.out, lambda f: f.write(text), mode='w')
        print(f'table written to {args.out}')
    else:
        print(text, end='')
    return text


if __name__ == '__main__':
    run_main(main)
