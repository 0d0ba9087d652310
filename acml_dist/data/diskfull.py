"""A full disk during featurisation: one clear error instead of a Ray traceback, and nothing half-written
left to take up the space a re-run needs.

Every file of a featurisation is written through a temporary name and renamed when complete, so a write
that fails on a full disk leaves only a `.NAME.tmp-PID` file, never a file taken for complete; `guard_disk`
removes those leftovers before a run starts (no run writes the same output at the same time) and turns
ENOSPC / EDQUOT / EFBIG, raised in the driver or inside a Ray task, into `DiskFullError`."""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from acml_dist.errors import InputError

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TMP = re.compile(r"^\..+\.tmp-\d+$")
F = TypeVar("F", bound=Callable[..., Any])


class DiskFullError(InputError, OSError):
    """The output's file system ran out of space (or quota) while writing."""


def disk_errno(exc: BaseException) -> int | None:
    """The errno of a disk-full error, raised here or inside a Ray task (RayTaskError keeps it on .cause)."""
    for candidate in (exc, getattr(exc, "cause", None), exc.__cause__):
        code = getattr(candidate, "errno", None)
        if isinstance(candidate, OSError) and code in _FULL:
            return code
    return None


def remove_partial_files(root: Path) -> int:
    """Delete the temporary files of writes that never completed: in `root` itself and in the folders a
    featurisation writes below it (`_work`, one per split), nowhere else; returns how many."""
    from acml_dist.data.shards import SPLITS

    if not root.is_dir():
        return 0
    found = [*root.glob(".*.tmp-*")]
    for sub in ("_work", *SPLITS):
        if (root / sub).is_dir():
            found += (root / sub).rglob(".*.tmp-*")
    removed = 0
    for path in found:
        if path.is_file() and _TMP.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def guard_disk(output_of: Callable[[Any], Path]) -> Callable[[F], F]:
    """Decorator of a stage `fn(cfg)` writing under `output_of(cfg)`: leftovers of an earlier run's failed
    writes are removed first; a disk-full error becomes one `DiskFullError` line naming the output."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(cfg: Any, *args: Any, **kwargs: Any) -> Any:
            out = Path(output_of(cfg))
            remove_partial_files(out)
            try:
                return fn(cfg, *args, **kwargs)
            except OSError as exc:  # a RayTaskError of an OSError is an OSError too
                code = disk_errno(exc)
                if code is None:
                    raise
                raise DiskFullError(
                    code,
                    f"no space left for the featurisation output {out} ({errno.errorcode[code]}); finished "
                    "chunks and shards are kept: free space and run the same command again to resume",
                ) from None

        return run  # type: ignore[return-value]

    return wrap
