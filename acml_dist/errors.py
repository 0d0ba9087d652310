"""Exceptions any layer raises for a problem with the user's input or set-up (a missing column, shards of
another configuration, a teacher that cannot be loaded): `InputError` and its `ValueError` flavour
`DataError`. The CLI prints their message on one line and exits 2; anything else is a bug and keeps its
traceback. Errors inside Ray tasks arrive as RayTaskError subclasses of the same class, so this holds there
too."""

from __future__ import annotations


class InputError(Exception):
    """The input or set-up is wrong and the message says how; not a bug in acml-dist."""


class DataError(InputError, ValueError):
    """A data file, column or data setting that cannot be used as given (still a ValueError for callers)."""


class UnsafeFileError(InputError):
    """A checkpoint / model file that holds more than tensors and plain data (a pickle that would construct
    arbitrary objects, i.e. run code): refused, never loaded."""
