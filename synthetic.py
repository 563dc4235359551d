"""Write a small synthetic dataset in the real on-disk layout of SYSU-MM01, RegDB or LLCM.

    python synthetic.py --dataset sysu --out synthetic/SYSU-MM01 --ids 12

The images are those of ifalnet/toy_datasets.py (the tests and the demo use them): each identity
has its own look, and its infrared images invert the luminance of its visible ones. The command
writes only into a new or empty folder, and leaves a marker file there, so that `--force` can
replace a dataset it made earlier (and nothing else), and so that train.py and test.py report the
copy as synthetic and check it against the counts the marker holds (ifalnet/dataset_census.py).
"""
import os
import shutil

# MARKER marks a folder synthetic.py made (--force may replace it)
from ifalnet.dataset_census import SYNTHETIC_MARKER as MARKER
from ifalnet.flags import add_flag, make_parser, parse_size
from ifalnet.interruption import run_main
from ifalnet.output_paths import check_output_dir
from ifalnet.toy_datasets import make_llcm, make_regdb, make_sysu
from utils import ReIDError


def clear_out(out, force):
    """Make sure a new dataset is not mixed with other files: `out` must be new or empty, or, with
    `force`, a dataset this script made (it is then removed). Any other folder is left alone."""
    if not os.path.exists(out):
        check_output_dir(out, '--out')
        return
    if not os.path.isdir(out):
        raise ReIDError(f'--out {out} is a file, not a folder')
    if not os.listdir(out):
        return
    ours = os.path.isfile(os.path.join(out, MARKER))
    if ours and force:
        shutil.rmtree(out)
    elif ours:
        raise ReIDError(f'--out {out} already holds a synthetic dataset: pass --force to replace it, or choose '
                        'a new or empty folder')
    else:
        raise ReIDError(f'--out {out} is not empty and synthetic.py did not make it (no {MARKER} file), so it is '
                        'left alone, even with --force: choose a new or empty folder')


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0], alias_note=False)
    add_flag(parser, '--dataset', choices=('sysu', 'regdb', 'llcm'), required=True, help='layout to write')
    add_flag(parser, '--out', required=True, metavar='DIR', help='root folder to create (new or empty)')
    add_flag(parser, '--ids', type=int, default=12, help='number of identities (half train, half test)')
    add_flag(parser, '--images', type=int, default=2, help='images per camera (RegDB: per identity)')
    add_flag(parser, '--size', type=parse_size, default='128x64', metavar='HxW', help='image size')
    add_flag(parser, '--seed', type=int, default=0, help='seed of the per-image jitter and of the RegDB splits')
    add_flag(parser, '--force', action='store_true',
             help='replace the dataset in --out if synthetic.py made it (a folder it did not make is never touched)')
    args = parser.parse_args(argv)
    if args.ids < 4:
        raise ReIDError(f'--ids {args.ids}: need at least 4 identities')
    clear_out(args.out, args.force)
    ids = list(range(1, args.ids + 1))
    half = args.ids // 2
    common = {'size': args.size, 'seed': args.seed, 'marker': MARKER, 'made_by': 'synthetic.py'}
    if args.dataset == 'sysu':
        make_sysu(args.out, train_ids=ids[:half - 1], val_ids=ids[half - 1:half], test_ids=ids[half:],
                  images_per_cam=args.images, **common)
    elif args.dataset == 'regdb':
        make_regdb(args.out, num_ids=args.ids, images_per_id=args.images, **common)
    else:
        make_llcm(args.out, train_ids=ids[:half], test_ids=ids[half:], images_per_cam=args.images, **common)
    print(f'wrote a synthetic {args.dataset} dataset with {args.ids} identities to {args.out}')


if __name__ == '__main__':
    run_main(main)
