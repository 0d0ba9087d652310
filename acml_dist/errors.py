"""Exceptions any layer raises for a problem with the user's input or set-up (a missing column, shards of
another configuration, a teacher that cannot be loaded): `InputError` and its `ValueError` flavour
`DataError`; `StageError` names the pipeline stage that failed. `run_main` is the one error -> exit-code
mapping of the entry points (`acml`, `cluster/*.py` through it, `python -m acml_dist.data.datasets`): an
input error prints one line and exits 2, a failed stage one line and exits 1; anything else is a bug and
keeps its traceback. Errors inside Ray tasks arrive as RayTaskError
subclasses of the same class, so this holds there too. Standard library only: sits under every layer."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_STAGE_FAILED = 1
EXIT_INPUT_ERROR = 2


class InputError(Exception):
    """The input or set-up is wrong and the message says how; not a bug in acml-dist."""


class DataError(InputError, ValueError):
    """A data file, column or data setting that cannot be used as given (still a ValueError for callers)."""


class ConfigError(InputError, ValueError):
    """A configuration problem, with the offending key named (`acml_dist.config` re-exports it)."""


class UnsafeFileError(InputError):
    """A checkpoint / model file that holds more than tensors and plain data (a pickle that would construct
    arbitrary objects, i.e. run code): refused, never loaded."""


class StageError(RuntimeError):
    """A stage of the pipeline failed: the message names it and the cause."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"stage '{stage}' failed: {type(cause).__name__}: {cause}")
        self.stage = stage


def exit_code(exc: BaseException) -> int | None:
    """The exit status of an entry point that raised `exc`; None for a bug (re-raised with its traceback)."""
    if isinstance(exc, StageError):
        return EXIT_STAGE_FAILED
    if isinstance(exc, (InputError, FileNotFoundError)):
        return EXIT_INPUT_ERROR
    return None


def run_main(prog: str, body: Callable[[], int]) -> int:
    """Run an entry point's `body` and return its exit status; an error `exit_code` knows becomes one line
    `<prog>: <message>` on stderr and its status (ACML_DEBUG=1: raised with the traceback instead)."""
    try:
        return body()
    except Exception as exc:
        code = exit_code(exc)
        if code is None or os.environ.get("ACML_DEBUG"):
            raise
        cause = getattr(exc, "cause", None) or exc  # from a Ray task: the original, not Ray's traceback
        sys.stderr.write(f"{prog}: {cause}\n")  # one write: a launcher merges every rank's stderr
        return code
