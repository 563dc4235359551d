"""Small general helpers of the method modules: the project's error type and message helpers.

Everything a script needs around the method (files written atomically, flags, devices, signals)
lives in the ifalnet/ package.
"""
import pickle


class ReIDError(Exception):
    """A problem with the user's input (paths, files, checkpoints) that deserves a plain message."""


def plural(count, noun):
    """'1 step', '2 steps': a count with its noun (regular English plural)."""
    return f'{count} {noun}' + ('' if count == 1 else 's')


def loud(message):
    """`message` between two rules of '!', for what must not scroll by unnoticed."""
    rule = '!' * 100
    return f'{rule}\n{message}\n{rule}'


def load_failure(err, kind='checkpoint'):
    """Why torch.load(..., weights_only=True) refused a file (a `kind`), in one line, without torch's
    advice to load it unsafely."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and 'weights_only' in text:
        detail = [line.strip() for line in text.splitlines() if 'WeightsUnpickler error' in line]
        detail = detail[0].split(':', 1)[1].strip() if detail else 'an object of a type that is not allowed'
        return (f'it holds objects other than tensors and plain values ({detail}); {kind} files are read '
                'without running code from them, so it is refused')
    if isinstance(err, RuntimeError) and 'zip archive' in text:
        return 'the file is damaged or incomplete (its zip archive cannot be read)'
    return f'not a PyTorch {kind} file ({type(err).__name__}' + (f': {text.splitlines()[0]})' if text else ')')
