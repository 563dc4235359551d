"""Small shared helpers: the project's error type, atomic file writes, logging, checkpoints."""
import os
import sys
import tempfile


class ReIDError(Exception):
    """A problem with the user's input (paths, files, checkpoints) that deserves a plain message."""


def atomic_write(path, write_fn, mode='wb'):
    """Write `path` through `write_fn(file_object)` so that readers see the old file or the new one.

    The data goes to a temporary file in the same directory (same file system), is flushed to
    disk, and then replaces `path` in one `os.replace`; an interruption leaves `path` untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run_main(main):
    """Run a script's `main()`, turning a ReIDError into a one-line message and exit status 2."""
    try:
        main()
    except ReIDError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
