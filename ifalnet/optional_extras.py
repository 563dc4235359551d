"""The optional extras (requirements-export.txt, requirements-share.txt, requirements-hub.txt): a module
of one imported when it is needed, or one line naming what needs it and the pip command that installs it."""
import importlib

from utils import ReIDError


def require_extra(module, needed_for, requirements):
    """`module` imported, or a ReIDError: '<package> is not installed; <needed_for> need the optional
    extra: python3 -m pip install -r <requirements>' (the package: the module's top-level name)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ReIDError(f'{module.partition(".")[0]} is not installed; {needed_for} need the optional extra: '
                        f'python3 -m pip install -r {requirements}') from None
