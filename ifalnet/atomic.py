"""Files written atomically: readers see the old file or the new one, never a part.

`atomic_write` writes through a temporary file beside the target, flushed to disk and moved into
place in one `os.replace`, with SIGTERM and SIGINT held until it is done (`interruption.deferred`);
a failed write (a full disk, a read-only file system) becomes one line naming the file
(`write_error`). `temp_file_beside` makes such a temporary file, with the mode any new file gets.
"""
import errno
import os
import tempfile

from ifalnet import interruption
from utils import ReIDError


def current_umask():
    """The process's umask (read from /proc where it can be, since setting it to read it is not
    thread-safe)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name(name):
    """The longest name `temp_file_beside` gives the temporary file of a file called `name`: '.', the
    name, '.', tempfile's 8 random characters and '.tmp'."""
    return f'.{name}.{"x" * 8}.tmp'


def temp_file_beside(path):
    """A new temporary file next to `path` (same file system, so `os.replace` onto `path` is atomic),
    returned as (fd, name). Its mode is the one the umask gives any new file (0644 under umask 022),
    not mkstemp's private 0600, so the file that replaces `path` is as readable as one made by open()."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return fd, tmp


class _RecordingFile:
    """A file that keeps the OSError of a failed write (torch.save hides it in a RuntimeError)."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self.file, name)


def write_error(path, err):
    """The one-line ReIDError of an OSError while writing `path` (ENOSPC, EROFS, EACCES, EISDIR)."""
    code = f' [{errno.errorcode[err.errno]}]' if err.errno in errno.errorcode else ''
    return ReIDError(f'cannot write {os.fspath(path)}: {err.strerror or err}{code}')


def atomic_write(path, write_fn, mode='wb'):
    """Write `path` through `write_fn(file_object)` so that readers see the old file or the new one.

    The data goes to a temporary file in the same directory (same file system), is flushed to
    disk, and then replaces `path` in one `os.replace`; an interruption leaves `path` untouched.
    SIGTERM and SIGINT wait until the write is done (see interruption.deferred). A system error
    (full disk, read-only file system) becomes a ReIDError naming `path` and the system's reason.
    """
    recording = None
    try:
        with interruption.deferred():
            fd, tmp = temp_file_beside(path)
            try:
                with os.fdopen(fd, mode) as f:
                    recording = _RecordingFile(f)
                    write_fn(recording)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
    except (OSError, RuntimeError) as err:
        cause = recording.error if recording is not None and recording.error is not None else err
        if isinstance(cause, OSError):
            raise write_error(path, cause) from err
        raise
