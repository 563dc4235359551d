"""Small general helpers of the method modules: the project's error type and message helpers.

Everything a script needs around the method (files written atomically, flags, devices, signals)
lives in the ifalnet/ package.
"""


class ReIDError(Exception):
    """A problem with the user's input (paths, files, checkpoints) that deserves a plain message."""


def plural(count, noun):
    """'1 step', '2 steps': a count with its noun (regular English plural)."""
    return f'{count} {noun}' + ('' if count == 1 else 's')


def loud(message):
    """`message` between two rules of '!', for what must not scroll by unnoticed."""
    rule = '!' * 100
    return f'{rule}\n{message}\n{rule}'
