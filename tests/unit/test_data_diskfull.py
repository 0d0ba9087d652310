"""The disk-full guard: which leftovers it removes (only a featurisation's own), which errors it turns into
one DiskFullError line."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from acml_dist.data.diskfull import DiskFullError, guard_disk, remove_partial_files
from acml_dist.errors import InputError

pytestmark = pytest.mark.unit


def test_remove_partial_files_only_own_leftovers(tmp_path: Path) -> None:
    names = [
        ".manifest.json.tmp-12",
        "_work/chunks/.c000001.tar.tmp-5",
        "train/.shard-000000.tar.tmp-9",
        "other/.x.tmp-1",  # not a folder featurisation writes
        "train/shard-000000.tar",  # a complete file
        ".notes.tmp-x",  # not an atomic_write name
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert remove_partial_files(tmp_path) == 3
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [".notes.tmp-x", "other/.x.tmp-1", "train/shard-000000.tar"]


def test_guard_turns_only_disk_full_into_one_line(tmp_path: Path) -> None:
    def stage(code: int):
        @guard_disk(lambda cfg: tmp_path / "out")
        def run(cfg: object) -> None:
            raise OSError(code, "write failed")

        return run

    with pytest.raises(DiskFullError, match="no space left for the featurisation output") as info:
        stage(errno.ENOSPC)(None)
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)
    with pytest.raises(DiskFullError, match="EDQUOT"):
        stage(errno.EDQUOT)(None)
    with pytest.raises(OSError) as other:
        stage(errno.EACCES)(None)
    assert not isinstance(other.value, DiskFullError)
