"""A training run: its name, its files in --model_path, its lock, and the random states an exact
resume restores. One run, one set of files.

The run's name (`run_stem`: --run-name, else the release's name, `run_name`, which names the
component switches that differ from the release's) is the stem of `<name>_best.t`, `<name>_last.t`,
`<name>_epoch_<e>.t` (the epochs `keeps_epoch` keeps) and `<name>.lock`. `claim` is what
train.py holds while it trains: the lock file (host and PID; a second run with the same name
refuses at once, the lock of a process that is gone is taken over with a note), the refusal of a
fresh run whose files already exist (saying what is there and which arguments differ, offering
--resume, --run-name and --overwrite), and the removal of temporary files a killed write left. Under torchrun rank 0 alone claims the run; a
restart by torchrun's elastic agent takes over the lock of the attempt before.
`resolve_resume` turns `--resume auto` into the run's `_last.t` when there is one. The random
states of every process (`gathered_rng`, `restore_rng`, `set_seed`) are saved in `_last.t`.
"""
import contextlib
import glob
import json
import os
import random
import re
import shutil
import socket
import time

import numpy as np
import torch

try:
    import fcntl
except ImportError:   # Windows: byte-range locks of msvcrt, released with their process too
    fcntl = None
    import msvcrt

from data_manager import dataset_info
from ifalnet import ddp
from ifalnet.atomic import temp_name
from ifalnet.checkpoints import read_checkpoint
from ifalnet.flags import BOOKKEEPING, architecture, loss_switches
from ifalnet.interruption import deferred
from ifalnet.output_paths import name_max, note_removed, remove_stale_temp_files
from utils import ReIDError

AUTO = 'auto'


def run_name(args):
    """The release's name of a run, '<dataset>_p<num_pos>_n<batch>_lr_<lr>_seed_<seed>', then '_<optim>'
    unless SGD, the component switches that differ from the release's (model.Architecture and
    loss.LossSwitches spell them), '_val' with --select val and '_trial_<t>' for a RegDB split."""
    name = f'{args.dataset}_p{args.num_pos}_n{args.batch_size}_lr_{args.lr}_seed_{args.seed}'
    if args.optim != 'sgd':
        name += f'_{args.optim}'
    name += architecture(args).run_name_part() + loss_switches(args).run_name_part()
    if getattr(args, 'select', 'test') == 'val':   # selected on held-out identities (train.py --select val)
        name += '_val'
    if dataset_info(args.dataset).split_trials:
        name += f'_trial_{args.trial}'
    return name


def keeps_epoch(epoch, save_epoch):
    """Whether epoch `epoch` is also saved as <run>_epoch_<epoch>.t: the release's rule, every
    --save_epoch epochs after the warm-up (epochs 20, 40, ..., 120 by default)."""
    return epoch > 10 and epoch % save_epoch == 0


def run_stem(args):
    return args.run_name or run_name(args)


def check_run_name(name):
    if name is not None and not re.fullmatch(r'[A-Za-z0-9][\w.+=-]*', name):
        raise ReIDError(f'--run-name {name!r}: expected a file stem of letters, digits and . _ + = - (no folders)')


def check_name_length(args, name):
    """Refuse, before any work, a run name that makes a file name longer than its file system allows
    (the longest: the temporary file of the last kept epoch's checkpoint while it is written)."""
    names = {args.model_path: (temp_name(f'{name}_epoch_{max(args.epochs - 1, 0)}.t'), f'{name}.lock',
                               f'.{name}_replaced'),
             os.path.join(args.log_path, f'{args.dataset}_log'): (f'{name}_os.txt',),
             args.vis_log_path: (name,)}
    for folder, files in names.items():
        longest, limit = max(files, key=len), name_max(folder)
        if len(longest) > limit:
            source = '--run-name' if args.run_name else 'the run name made of the arguments'
            raise ReIDError(f'{source} {name} ({len(name)} characters) is too long for {folder}: the run\'s file '
                            f'{longest} would have {len(longest)} characters, and the file system allows {limit}; '
                            'give a shorter --run-name')


def checkpoint_files(model_path, name):
    """The run's checkpoints that exist: _best.t, _last.t and every _epoch_<e>.t."""
    stem = os.path.join(model_path, name)
    epochs = [p for p in glob.glob(glob.escape(stem) + '_epoch_*.t') if re.fullmatch(r'_epoch_\d+\.t', p[len(stem):])]
    return [p for p in (f'{stem}_best.t', f'{stem}_last.t') if os.path.isfile(p)] + sorted(epochs)


def last_checkpoint(model_path, name):
    return os.path.join(model_path, f'{name}_last.t')


def resume_hint(model_path, name, replacing=False):
    """How to go on after an interruption: the run's _last.t, or the same command when none was saved
    (only that when the run was replacing an earlier one with --overwrite, which is then put back)."""
    last = last_checkpoint(model_path, name)
    if replacing:
        return 'no epoch was saved yet and the earlier run is kept: run the same command again'
    if os.path.isfile(last):
        return f'resume with --resume {last}'
    return 'no epoch was saved yet: run the same command again (or add --resume auto)'


def resolve_resume(args):
    """`--resume auto`: the run's _last.t if it exists (printed), else '' (a fresh start)."""
    if args.resume != AUTO:
        return args.resume
    last = last_checkpoint(args.model_path, run_stem(args))
    found = os.path.isfile(last)
    if ddp.is_main():
        print(f'--resume auto: continuing from {last}' if found else f'--resume auto: no {last} yet, starting afresh',
              flush=True)
    return last if found else ''


# What a resumed run may give otherwise besides the bookkeeping: how long it trains (--epochs, which may
# grow), the start a checkpoint replaces (--pretrained) and the squeeze-excitation channels, which the
# checkpoint stores and which are checked on their own.
RESUME_MAY_CHANGE = ('epochs', 'pretrained', 'se_channels')


def differing_arguments(saved, args, also_ignored=()):
    """'--flag value (that run: value)' for the arguments of `args` that a run saved with `saved` had
    otherwise, leaving out the bookkeeping ones and `also_ignored`: the one notion of "another run" of a
    fresh start over an existing run and of a resume."""
    now, ignored = vars(args), set(BOOKKEEPING) | set(also_ignored)
    return [f'--{k} {now[k]} (that run: {saved[k]})' for k in sorted(set(saved) & set(now) - ignored)
            if saved[k] != now[k]]


def refuse_another_run(ckpt, args, source):
    """Refuse to resume `source` (its checkpoint `ckpt`) with training arguments other than its own: the
    run would go on as another one and then store the new values as if the whole run had used them."""
    saved = ckpt.get('args')
    differ = differing_arguments(saved, args, RESUME_MAY_CHANGE) if isinstance(saved, dict) else []
    if differ:
        raise ReIDError(f'{source} was trained with other arguments than this run: {", ".join(differ)}. Resume it '
                        'with the values it was trained with, or start a new run with its own --run-name NAME')


def describe_run(files):
    """What the run's files hold: the epoch of its latest checkpoint, and the arguments it was trained
    with (None when no file can be read)."""
    for path in files[::-1] if files[-1].endswith('_last.t') else files:
        try:
            ckpt = read_checkpoint(path, mmap=True)
        except ReIDError:
            continue
        return ckpt.get('epoch'), ckpt.get('args')
    return None, None


def refuse_existing(args, name, files):
    epoch, saved = describe_run(files)
    held = ', '.join(os.path.basename(f) for f in files)
    what = f'{held}' + (f', trained to epoch {epoch}' if epoch is not None else '')
    differ = differing_arguments(saved, args) if saved else []
    differences = ('; arguments that differ from it: ' + ', '.join(differ)) if differ else \
        ('; the same arguments' if saved else '')
    resume = f'--resume auto (or --resume {last_checkpoint(args.model_path, name)})'
    if saved and differing_arguments(saved, args, RESUME_MAY_CHANGE):   # a resume would be refused too
        resume += ' and the values it was trained with'
    raise ReIDError(f'--model_path {args.model_path} already holds the run {name} ({what}){differences}. '
                    f'Continue it with {resume}, give this run its own name with --run-name NAME, or replace it '
                    'with --overwrite')


@contextlib.contextmanager
def claim(args, name):
    """Hold the run `name` in --model_path for the block: its lock, the check that a fresh run
    overwrites nothing (or, with --overwrite, the earlier run's checkpoints kept aside until this run
    has saved its first _last.t) and the removal of its stale temporary files. Yields a `Replacement`;
    the trainer calls its `saved()` after each save of _last.t."""
    created = new_folders(args.model_path)
    os.makedirs(args.model_path, exist_ok=True)
    try:
        with run_lock(os.path.join(args.model_path, f'{name}.lock')):
            replacement = Replacement(args.model_path, name)
            replacement.recover()
            files = checkpoint_files(args.model_path, name)
            if files and not args.resume:
                if not args.overwrite:
                    refuse_existing(args, name, files)
                replacement.set_aside(files)
            note_removed(remove_stale_temp_files(args.model_path, re.escape(name) + r'_(best|last|epoch_\d+)\.t'))
            try:
                yield replacement
            finally:
                replacement.end()
    finally:
        for folder in created:   # a run that saved nothing leaves no empty --model_path behind
            with contextlib.suppress(OSError):
                os.rmdir(folder)


class Replacement:
    """--overwrite without a moment when neither run is whole: the earlier run's checkpoints move (a
    rename, on the same file system) into the hidden folder `.<name>_replaced` and are removed when
    the new run has saved its first _last.t, its resume point; a run that ends before that (a signal,
    a divergence, an error) puts them back and removes whatever else it wrote. A process killed
    outright leaves the folder, which the next start of the run resolves the same way (`recover`)."""

    def __init__(self, model_path, name):
        self.model_path, self.name = model_path, name
        self.aside = os.path.join(model_path, f'.{name}_replaced')
        self.pending = False

    def set_aside(self, files):
        os.makedirs(self.aside, exist_ok=True)
        with deferred():   # all of them or, after a signal, still all of them
            for path in files:
                os.replace(path, os.path.join(self.aside, os.path.basename(path)))
        self.pending = True
        print(f'--overwrite: the earlier run\'s {", ".join(os.path.basename(f) for f in files)} are kept in '
              f'{self.aside} until this run saves its first {self.name}_last.t, then removed', flush=True)

    def saved(self):
        """The new run's _last.t is written: the earlier run goes."""
        if self.pending:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.pending = False
            print(f'--overwrite: removed the earlier run\'s checkpoints ({self.aside})', flush=True)

    def end(self):
        if self.pending:
            with deferred():
                self.restore('this run ended before saving its first checkpoint')
            self.pending = False

    def restore(self, why):
        for path in checkpoint_files(self.model_path, self.name):   # a _best.t or _epoch_N.t without a resume point
            os.remove(path)
        kept = sorted(os.listdir(self.aside))
        for f in kept:
            os.replace(os.path.join(self.aside, f), os.path.join(self.model_path, f))
        os.rmdir(self.aside)
        print(f'--overwrite: {why}; the earlier run\'s {", ".join(kept)} are back in {self.model_path}', flush=True)

    def recover(self):
        """Resolve what a replacement killed outright left: the new run's resume point, or the old run."""
        if not os.path.isdir(self.aside):
            return
        if os.path.isfile(last_checkpoint(self.model_path, self.name)):
            shutil.rmtree(self.aside, ignore_errors=True)
            print(f'note: removed {self.aside}, the earlier run an --overwrite replaced (its replacement had '
                  'saved its resume point)', flush=True)
        else:
            self.restore('the replacing run was stopped before saving its first checkpoint')


def new_folders(path):
    """The folders `os.makedirs(path)` would create, deepest first."""
    path, missing = os.path.abspath(path), []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _process_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False   # it exists, under another user
    return False


def lock_owner(fd):
    """The JSON of an open lock file (host, pid, start time), or None when it holds none (new, or cut
    short while it was written)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        owner = json.loads(os.read(fd, 4096).decode() or 'null')
        return owner if isinstance(owner, dict) and 'host' in owner and 'pid' in owner else None
    except (OSError, ValueError):
        return None


def refuse_owner(owner, path):
    raise ReIDError(f'the run is already being trained by process {owner["pid"]} on {owner["host"]}'
                    + (f' (since {owner.get("started")})' if owner.get('started') else '')
                    + f': its lock file {path} exists. Wait for it, give this run another --run-name, or, if that '
                    'process is gone (another host), remove the lock file')


@contextlib.contextmanager
def run_lock(path):
    """Hold the run's lock file `path` for the block: an exclusive flock, which the kernel releases when
    its process ends however it ends, on a file that is only ever removed by its holder; the file says
    who holds it (JSON: host, pid, start time). A run whose lock is held, or whose lock names a live
    process on this host or a process on another host (its flock may not reach here), is refused; a
    lock left by a process that is gone is taken over, with a note. There is no moment when the file
    is removed and made again, so two starters never both hold it."""
    me = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except (BlockingIOError, PermissionError):
            owner = lock_owner(fd) or {'host': 'this host', 'pid': 'unknown'}
            os.close(fd)
            refuse_owner(owner, path)
        except BaseException:
            os.close(fd)
            raise
        try:   # the holder before us may have removed the file between our open and our flock
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        owner = lock_owner(fd)
        # After a failure torchrun's elastic agent stops every process before it restarts them (rank 0
        # perhaps on another node): the lock of the attempt before is stale wherever it was taken.
        restarted = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0) > 0
        if owner is not None and owner.get('pid') != me['pid'] and not restarted:
            if owner['host'] != me['host'] or not _process_gone(int(owner['pid'])):
                refuse_owner(owner, path)
        if owner is not None and owner.get('pid') != me['pid']:
            gone = ' (torchrun restarted the run)' if restarted else ', which is gone'
            print(f'note: taking over the lock {path} of process {owner["pid"]} on {owner["host"]}{gone}', flush=True)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        if fcntl is None:   # Windows removes no open file
            os.close(fd)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.remove(path)   # while holding the flock: a starter that opened it will find it gone
        if fcntl is not None:
            os.close(fd)


def rng_state():
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {'python': random.getstate(), 'torch': torch.get_rng_state(),
             'numpy': (torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    torch.set_rng_state(state['torch'])
    keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(('MT19937', keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gathered_rng():
    """The random states of every process, for the checkpoint: 'rng' is rank 0's (the one-process
    format), 'rng_ranks' all of them in rank order when there are several. Every process calls it."""
    states = ddp.all_gather(rng_state())
    return {'rng': states[0], 'world_size': len(states), **({'rng_ranks': states} if len(states) > 1 else {})}


def restore_rng(ckpt, source):
    """This process's random states from a checkpoint written by as many processes as this run has."""
    saved, world = int(ckpt.get('world_size', 1)), ddp.world_size()
    if saved == world:
        set_rng_state(ckpt['rng_ranks'][ddp.rank()] if world > 1 else ckpt['rng'])
    else:
        print(f'note: {source} was written by {saved} process(es) and this run has {world}: the identity '
              f'draws follow the {world}-process sequence and the other random streams restart from '
              f'--seed, so the run will not equal an uninterrupted one', flush=True)


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
