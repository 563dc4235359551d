"""The whole pipeline on synthetic data, from scratch, in a few minutes on a CPU.

    python demo.py --workdir demo_work

Writes a synthetic dataset in the SYSU-MM01 layout under WORKDIR/SYSU-MM01, prepares it with
process_sysu.py, tests a freshly initialised model with test.py, trains with train.py (Adam, small
images, no ImageNet start), tests the trained model, prints a table comparing the two and writes
WORKDIR/results.json = {"untrained": ..., "trained": ..., "environment": ...} (the "mean" part of
each of test.py's results files, and the environment stamp of this machine). The scripts run as
subprocesses with the same command lines a user would type; the commands are printed. The test
identities are not among the training identities.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

# MARKER marks a dataset folder the demo made (and may replace)
from ifalnet.dataset_census import DEMO_MARKER as MARKER, marker_record, write_marker
from ifalnet.flags import add_flag, make_parser
from ifalnet.interruption import Interrupted, run_main
from ifalnet.output_paths import check_output_dir
from utils import ReIDError

HERE = os.path.dirname(os.path.abspath(__file__))

# Full: 32 training identities, 16 test identities, 3 images per camera, 64x32 images, 10 epochs.
# Quick: a smoke run of every step (a minute), too short to learn.
SETTINGS = {
    'full': dict(train_ids=32, test_ids=16, images_per_cam=3, size=(64, 32), epochs=10),
    'quick': dict(train_ids=4, test_ids=3, images_per_cam=1, size=(32, 16), epochs=1),
}
# Two epochs of warm-up (not the release's ten) and the rate divided by 10 for the last two: the ten epochs
# reach --lr early and end with smaller steps, instead of ending at the top of the warm-up.
TRAIN_FLAGS = ['--optim', 'adam', '--lr', '0.02', '--pretrained', 'none', '--batch-size', '4', '--num_pos', '4',
               '--warmup-epochs', '2', '--lr-steps', '8']


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0], alias_note=False)
    add_flag(parser, '--workdir', default='demo_work', metavar='DIR',
             help='folder for the data, checkpoints, logs and results')
    add_flag(parser, '--quick', action='store_true', help='a one-minute smoke run (too short to learn)')
    add_flag(parser, '--seed', default=0, type=int, help='seed of the synthetic images and of training')
    add_flag(parser, '--gpu', default='0', help="passed to train.py and test.py ('cpu' or '' forces the CPU)")
    add_flag(parser, '--workers', default=0, type=int, help='data loading processes of train.py and test.py')
    return parser.parse_args(argv)


if __name__ == '__main__':   # the flags first: a mistyped one stops here, before torch and the modules below
    parse_args()                # are imported (main parses them again)

import numpy as np
import torch

from data_manager import SYSU_ARRAYS
from ifalnet.atomic import atomic_write
from ifalnet.checkpoints import save_checkpoint
from ifalnet.environment_stamp import stamp
from ifalnet.run_files import run_name
from ifalnet.scoring import METRIC_KEYS
from ifalnet.toy_datasets import make_sysu


def run_script(script, args, on_line=None):
    """Run one of the project's scripts with this Python; stop the demo if it fails. The command is
    printed as it can be pasted into a shell; `on_line(line)` sees each line the script prints."""
    cmd = [sys.executable, os.path.join(HERE, script), *args]
    print('\n$ ' + shlex.join(cmd), flush=True)
    start = time.time()
    with subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            print(line, end='', flush=True)
            if on_line:
                on_line(line)
    if proc.returncode != 0:
        raise ReIDError(f'{script} failed (exit code {proc.returncode}); its message is above')
    seconds = time.time() - start
    print(f'({script} took {seconds:.0f}s)', flush=True)
    return seconds


LONG_MINUTES = 15   # a full demo expected to run longer than this suggests --quick


class TimeLeft:
    """After train.py's first epoch, the estimated time left: the other epochs at the first one's
    pace (validation included as another `test_seconds` / trials share) and the final test."""

    def __init__(self, epochs, test_seconds, quick):
        self.epochs, self.test_seconds, self.quick, self.done = epochs, test_seconds, quick, False

    def __call__(self, line):
        found = re.match(r'epoch 0 done in ([\d.]+)s', line)
        if self.done or not found:
            return
        self.done = True
        left = (self.epochs - 1) * (float(found.group(1)) + self.test_seconds / 10) + self.test_seconds
        note = f'demo: epoch 0 took {float(found.group(1)):.0f}s; about {left / 60:.0f} min left'
        if left > 60 * LONG_MINUTES and not self.quick:
            note += (' (this machine is slower or busier than the README\'s: `python3 demo.py --quick` '
                     'runs every step in about a minute, too short to learn)')
        print(note, flush=True)


def marker_settings(setting, seed):
    """The settings a demo dataset was made with, as its marker records them."""
    return {**setting, 'size': list(setting['size']), 'seed': seed}


def make_dataset(root, setting, seed):
    """The synthetic SYSU-MM01 of `setting` and `seed` in `root`, prepared by process_sysu.py: kept when an
    earlier demo made it with the same settings and prepared it (a demo run again continues), else made
    afresh, replacing an earlier demo dataset and nothing else. Returns whether it was kept."""
    marker = os.path.join(root, MARKER)
    if os.path.exists(root):
        record = marker_record(marker)
        if record is None:
            raise ReIDError(f'{root} exists and was not made by demo.py; choose another --workdir')
        same = record.get('settings') == marker_settings(setting, seed)
        prepared = all(os.path.isfile(os.path.join(root, name)) for name in SYSU_ARRAYS)
        if same and prepared:
            print(f'synthetic SYSU-MM01 in {root}: kept, made by an earlier demo with these settings', flush=True)
            return True
        shutil.rmtree(root)
    n_train, n_test = setting['train_ids'], setting['test_ids']
    ids = list(range(1, n_train + n_test + 2))
    make_sysu(root, train_ids=ids[:n_train], val_ids=ids[n_train:n_train + 1], test_ids=ids[n_train + 1:],
              images_per_cam=setting['images_per_cam'], size=setting['size'], seed=seed, marker=None)
    write_marker(root, MARKER, 'demo.py', 'sysu', settings=marker_settings(setting, seed))
    print(f'synthetic SYSU-MM01 in {root}: {n_train} + 1 training identities, {n_test} test identities, '
          f'{setting["images_per_cam"]} image(s) per camera, {setting["size"][0]}x{setting["size"][1]}', flush=True)
    run_script('process_sysu.py', ['--data-path', root])
    return False


def save_untrained(path, data_root, seed):
    """A release-format checkpoint of a freshly initialised model (epoch -1)."""
    from model import embed_net
    n_class = len(np.unique(np.load(os.path.join(data_root, 'train_rgb_resized_label.npy'))))
    torch.manual_seed(seed)
    save_checkpoint({'net': embed_net(n_class, pretrained='none').state_dict(), 'epoch': -1,
                     'environment': stamp(torch.device('cpu'))}, path)


def comparison(untrained, trained, quick=False):
    """The demo's last table; `quick`: the scores of a smoke run, without a gain (one epoch on four
    identities learns nothing, and a difference would read as a result)."""
    if quick:
        rows = ['', 'ALL scores of the smoke run (--quick: every step ran; 1 epoch on 4 identities is too short to '
                'learn, so these numbers say nothing about training; run the demo without --quick for that):',
                f'  {"score":<8}{"untrained":>12}{"trained":>12}']
    else:
        rows = ['', 'ALL scores, test identities never seen in training (mean over the gallery trials):',
                f'  {"score":<8}{"untrained":>12}{"trained":>12}{"gain":>10}']
    for name in METRIC_KEYS:
        u, t = untrained['ALL'][name], trained['ALL'][name]
        rows.append(f'  {name:<8}{100 * u:>11.2f}%{100 * t:>11.2f}%' + ('' if quick else f'{100 * (t - u):>+9.2f}%'))
    return '\n'.join(rows)


def main(argv=None):
    args = parse_args(argv)
    try:
        run_demo(args)
    except Interrupted as err:   # each script said where it stopped; the demo says how to go on
        err.hint = (f'run the same command again to continue: {shlex.join([sys.executable, *sys.argv])} '
                    '(the dataset is kept and training resumes from its last epoch)')
        raise


def run_demo(args):
    setting = SETTINGS['quick' if args.quick else 'full']
    start = time.time()
    workdir = os.path.abspath(check_output_dir(args.workdir, '--workdir'))
    data_root = os.path.join(workdir, 'SYSU-MM01')
    model_path = os.path.join(workdir, 'save_model')
    os.makedirs(model_path, exist_ok=True)

    kept = make_dataset(data_root, setting, args.seed)

    h, w = (str(v) for v in setting['size'])
    common = ['--dataset', 'sysu', '--data-path', data_root, '--img_h', h, '--img_w', w,
              '--gpu', args.gpu, '--workers', str(args.workers)]
    untrained_ckpt = os.path.join(model_path, 'untrained.t')
    save_untrained(untrained_ckpt, data_root, args.seed)
    untrained_json = os.path.join(workdir, 'results_untrained.json')
    test_seconds = run_script('test.py', common + ['--mode', 'all', '--resume', untrained_ckpt,
                                                   '--results', untrained_json])

    # On the dataset an interrupted demo left, training continues from its _last.t; on a new dataset the
    # run of an earlier demo (other settings) is replaced.
    train_args = common + TRAIN_FLAGS + [
        '--epochs', str(setting['epochs']), '--seed', str(args.seed), '--model_path', model_path,
        '--log_path', os.path.join(workdir, 'log'), '--vis_log_path', os.path.join(workdir, 'log', 'vis_log'),
        '--print-freq', '10', *(['--resume', 'auto'] if kept else ['--overwrite'])]
    run_script('train.py', train_args, TimeLeft(setting['epochs'], test_seconds, args.quick))
    # The last epoch's weights, not the "best" checkpoint (which the release picks on the test set).
    flags = dict(zip(TRAIN_FLAGS[::2], TRAIN_FLAGS[1::2]))
    name = run_name(argparse.Namespace(dataset='sysu', num_pos=int(flags['--num_pos']), lr=float(flags['--lr']),
                                       batch_size=int(flags['--batch-size']), seed=args.seed, optim=flags['--optim']))
    trained_ckpt = os.path.join(model_path, name + '_last.t')
    trained_json = os.path.join(workdir, 'results_trained.json')
    run_script('test.py', common + ['--mode', 'all', '--resume', trained_ckpt, '--results', trained_json])

    results = {}
    for key, path in (('untrained', untrained_json), ('trained', trained_json)):
        with open(path) as f:
            results[key] = json.load(f)['mean']
    results['environment'] = stamp(torch.device('cpu'))   # the demo's own: where it ran (the two tests' are in their files)
    out = os.path.join(workdir, 'results.json')
    atomic_write(out, lambda f: json.dump(results, f, indent=2), mode='w')
    print(comparison(results['untrained'], results['trained'], args.quick))
    print(f'\nwrote {out}; the demo took {time.time() - start:.0f}s', flush=True)


if __name__ == '__main__':
    run_main(main)
