"""How a script stops: SIGTERM and SIGINT as one exception, saves that a signal cannot cut, quiet
loader workers, and a script's exit (`run_main`: an error as one line and status 2).

Schedulers (SLURM, Kubernetes, torchrun's elastic agent) stop a job with SIGTERM first; a user
with Ctrl-C (SIGINT). Once `install` ran (every script does, through `run_main`), both raise
`Interrupted` in the main thread, so `finally` blocks and temporary-file clean-up run as for any
error, and the script ends with one line and the shell's status for the signal (143, 130).
`deferred` holds the signals while a file is written, so a save is finished rather than cut
(then the signal takes effect); `quiet_worker` makes DataLoader workers leave the signals to the
main process, which shuts them down (no worker tracebacks).

Python runs a signal handler only between its own instructions, so native code that never returns
(a crafted TorchScript file that loops) would leave SIGTERM and Ctrl-C without effect. Inside
`watched`, the signal also wakes a watchdog thread (through `signal.set_wakeup_fd`, written by the
C-level handler at once); if the native call has not returned `WATCHDOG_GRACE` seconds later, the
watchdog prints the one line and ends the process with the signal's status (`os._exit`: there is
nothing to clean up while a model runs).
"""
import contextlib
import os
import signal
import sys
import threading
import time

from utils import ReIDError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A SIGTERM or SIGINT; `where` and `hint` (set by whoever knows them) complete its line."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum, self.where, self.hint = signum, None, None

    @property
    def exit_status(self):
        return 128 + self.signum   # what a shell reports for a process ended by the signal

    def __str__(self):
        name = signal.Signals(self.signum).name
        if self.where is None and self.hint is None:
            return 'interrupted' if self.signum == signal.SIGINT else f'interrupted by {name}'
        return f'interrupted by {name}' + (f' at {self.where}' if self.where else '') + \
            (f'; {self.hint}' if self.hint else '')


def _raise(signum, frame):
    # A second signal while the first unwinds (clean-up, a deferred save) must not cut that short.
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def install():
    """SIGTERM and SIGINT raise `Interrupted` in the main thread from now on."""
    for s in SIGNALS:
        signal.signal(s, _raise)


@contextlib.contextmanager
def deferred():
    """Hold SIGTERM and SIGINT during the block; one that arrived is delivered when it ends (to the
    handler in place before). Outside the main thread (where handlers cannot be set) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def located(where):
    """An `Interrupted` raised in the block says it came at `where`, unless it already says where."""
    try:
        yield
    except Interrupted as err:
        err.where = err.where or where
        raise


WATCHDOG_GRACE = 1.0   # seconds a signalled native call has to return before the watchdog ends the process


class _Watchdog:
    """A daemon thread that reads the signal numbers written to its pipe (the wakeup fd) and ends the
    process when one of SIGNALS arrived while `busy` (what runs) is set and stays set for the grace."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)   # set_wakeup_fd's requirement
        self.busy = None
        threading.Thread(target=self._watch, name='signal-watchdog', daemon=True).start()

    def _watch(self):
        while True:
            for signum in os.read(self.read_fd, 64):
                run = self.busy
                if signum not in SIGNALS or run is None:
                    continue
                time.sleep(WATCHDOG_GRACE)
                if self.busy is run:   # the same call, still running
                    err = Interrupted(signum)
                    err.hint = f'{run[0]} did not return to Python, so the process ends at once'
                    print(err, file=sys.stderr, flush=True)
                    os._exit(err.exit_status)


_watchdog = None


@contextlib.contextmanager
def watched(what):
    """SIGTERM and SIGINT end the process within `WATCHDOG_GRACE` seconds even while the block runs native
    code that never returns (`what` names it in the line). Outside the main thread a no-op."""
    global _watchdog
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _watchdog is None:
        _watchdog = _Watchdog()
    previous = signal.set_wakeup_fd(_watchdog.write_fd, warn_on_full_buffer=False)
    run = _watchdog.busy = [what]   # a new object per call: the watchdog tells calls apart by identity
    try:
        yield
    finally:
        if _watchdog.busy is run:
            _watchdog.busy = None
        signal.set_wakeup_fd(previous)


def quiet_worker(worker_id=None):
    """DataLoader `worker_init_fn`: a worker ignores SIGINT and SIGTERM (Ctrl-C and schedulers signal
    the whole process group); the main process stops it."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def stop_line(err):
    """The one line a script ends with when `err` stops it (see `run_main`); for an unexpected
    exception, whose traceback follows on the terminal, its type and message."""
    if isinstance(err, ReIDError):
        # An error raised in a DataLoader worker comes back with the worker's traceback in its
        # text; its last line is the message.
        return 'error: ' + (str(err).strip().splitlines()[-1] if 'Original Traceback' in str(err) else str(err))
    if isinstance(err, Interrupted):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return 'interrupted'
    if isinstance(err, SystemExit):
        return None if err.code in (0, None) else f'exit status {err.code}'
    return f'stopped by an unexpected error (traceback on the terminal): {type(err).__name__}: {err}'


def run_main(main):
    """Run a script's `main()`: a ReIDError becomes a one-line message and exit status 2, SIGTERM and
    SIGINT one line and 143 / 130."""
    install()
    try:
        main()
    except ReIDError as err:
        print(stop_line(err), file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        print(stop_line(err), file=sys.stderr)
        sys.exit(err.exit_status)
    except KeyboardInterrupt as err:
        print(stop_line(err), file=sys.stderr)
        sys.exit(130)
