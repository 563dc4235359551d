"""Small general helpers: the project's error type, atomic file writes (a failed write as one
line), a script's exit (errors and signals). Checkpoints live in checkpoint.py,
command-line flags in flags.py, device and precision in device.py, output paths in outputs.py.
"""
import errno
import os
import sys
import tempfile

import interrupt

class ReIDError(Exception):
    """A problem with the user's input (paths, files, checkpoints) that deserves a plain message."""


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
    SIGTERM and SIGINT wait until the write is done (see interrupt.deferred). A system error
    (full disk, read-only file system) becomes a ReIDError naming `path` and the system's reason.
    """
    recording = None
    try:
        with interrupt.deferred():
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


def plural(count, noun):
    """'1 step', '2 steps': a count with its noun (regular English plural)."""
    return f'{count} {noun}' + ('' if count == 1 else 's')


def loud(message):
    """`message` between two rules of '!', for what must not scroll by unnoticed."""
    rule = '!' * 100
    return f'{rule}\n{message}\n{rule}'


def run_main(main):
    """Run a script's `main()`: a ReIDError becomes a one-line message and exit status 2, SIGTERM and
    SIGINT one line and 143 / 130."""
    interrupt.install()
    try:
        main()
    except ReIDError as err:
        # An error raised in a DataLoader worker comes back with the worker's traceback in its
        # text; its last line is the message.
        message = str(err).strip().splitlines()[-1] if 'Original Traceback' in str(err) else str(err)
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)
    except interrupt.Interrupted as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_status)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
