"""Output paths, checked before any work: folders a script will create and files it will write
(a read-only or full file system, a file where a folder is expected, a folder given as a file),
so a bad `--model_path` or `--results` fails in a second, not after an epoch or a whole
evaluation. Also removes the temporary files a killed write leaves (see atomic.atomic_write), and
copies what a run prints to its log file (`tee_stdout`).
"""
import contextlib
import os
import re
import sys
import tempfile

from ifalnet.atomic import write_error
from ifalnet.interruption import stop_line
from utils import ReIDError


def _existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def name_max(folder):
    """The longest file name the file system of `folder` (or of its nearest existing parent) allows."""
    try:
        return os.pathconf(_existing_ancestor(folder), 'PC_NAME_MAX')
    except (OSError, ValueError, AttributeError):   # not reported (or Windows): the common limit
        return 255


def _probe(folder, flag, given):
    """Create and remove a file in `folder`: the one test that also holds for root and for
    read-only mounts (os.access does not)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix='.write-check.', suffix='.tmp')
        os.close(fd)
        os.remove(name)
    except OSError as err:
        raise ReIDError(f'{flag} {given}: {write_error(folder, err)}') from None


def check_output_dir(path, flag, given=None):
    """A folder that will be created (with its parents) or written into: refuse, before anything is
    written, a path that is a file, or whose nearest existing folder cannot be written."""
    path = os.fspath(path)
    given = path if given is None else given
    base = _existing_ancestor(path)
    if not os.path.isdir(base):
        what = 'is a file' if base == os.path.abspath(given) else f'is inside {base}, which is a file'
        raise ReIDError(f'{flag} {given} {what}; expected a folder' if given == path else
                        f'{flag} {given} {what}; expected a file in a folder')
    _probe(base, flag, given)
    return path


def check_output_file(path, flag):
    """A file that will be written (atomically, beside itself): refuse a folder, and a place where no
    file can be made."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ReIDError(f'{flag} {path} is a folder; expected a file name')
    check_output_dir(os.path.dirname(os.path.abspath(path)), flag, path)
    return path


def remove_stale_temp_files(directory, name_pattern):
    """Remove the temporary files that a write killed before it could clean up leaves beside the
    files of `directory` whose names fully match the regular expression `name_pattern`; returns
    their paths."""
    if not os.path.isdir(directory):
        return []
    stale = re.compile(r'\.(' + name_pattern + r')\.[a-z0-9_]+\.tmp')
    removed = [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if stale.fullmatch(f)]
    for path in removed:
        os.remove(path)
    return removed


def note_removed(removed):
    """Print the note for `remove_stale_temp_files`' result."""
    if removed:
        print(f'note: removed {len(removed)} temporary file(s) left by an interrupted write: '
              + ', '.join(removed), flush=True)


class Tee:
    """A text stream that writes to the console and to a log file; when the log cannot be written (a
    full or failing disk) it says so once on the console and goes on with the console alone: the run's
    checkpoints may well be on another disk, and a run is not worth stopping for its log."""

    def __init__(self, console, file, path):
        self.console, self.file, self.path = console, file, path

    def write(self, text):
        self.console.write(text)
        self._to_log('write', text)

    def flush(self):
        self.console.flush()
        self._to_log('flush')

    def _to_log(self, method, *args):
        """The log file's `method`, until one fails: then a warning and no log from there on."""
        if self.file is None:
            return
        try:
            getattr(self.file, method)(*args)
        except OSError as err:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
            self.console.write(f'warning: {write_error(self.path, err)}; the log stops here and the run goes on, '
                               'printing to this console only\n')
            self.console.flush()

    def close(self, stopped=None):
        """Close the log, after the line saying why the run stopped (`stopped`) when it did."""
        if stopped:
            self._to_log('write', stopped + '\n')
        self._to_log('close')


@contextlib.contextmanager
def tee_stdout(path):
    """Copy everything printed inside the block to `path` (appended to, so a resumed run keeps its
    history). An error or a signal that ends the block is recorded there as the line the terminal
    shows (see interruption.stop_line)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    console = sys.stdout
    tee = Tee(console, open(path, 'a', buffering=1), path)
    sys.stdout = tee
    stopped = None
    try:
        yield
    except BaseException as err:
        stopped = stop_line(err)
        raise
    finally:
        sys.stdout = console
        tee.close(stopped)
