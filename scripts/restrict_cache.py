"""A copy of a dataset whose one teacher cache covers only the molecules another cache covers.

    python scripts/restrict_cache.py shards/mm100k shards/mm100k13s --teacher rxnfp --like nmr13c

Used for EVALUATION.md ("The 13C isomer gap at equal data"): a SMILES-only ACML run on exactly the
molecules that have a 13C spectrum, so the SMILES and 13C teachers are compared on the same molecules.
Graph shards and the other caches are hard links (nothing is copied twice; the writers replace files, never
edit them in place); the restricted cache is rewritten through `acml_dist.data.shards` (presence mask,
sha256 and missing counts in its manifest), so the loader's checks hold as for any cache."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np

from acml_dist.data.shards import (
    atomic_write,
    cache_dir,
    decode_npz,
    encode_npz,
    read_json,
    sha256_file,
    write_json,
)


def restrict(src: Path, dst: Path, teacher: str, like: str) -> dict[str, int]:
    """Copy `src` to `dst` (hard links) and mark `teacher`'s rows absent where `like` has none."""
    if dst.exists():
        raise SystemExit(f"{dst} exists: choose a new folder")
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    shutil.rmtree(cache_dir(dst, teacher))
    shutil.copytree(cache_dir(src, teacher), cache_dir(dst, teacher))
    manifest = read_json(cache_dir(dst, teacher) / "manifest.json")
    missing = {}
    for split, info in manifest["splits"].items():
        for entry in info["shards"]:
            path = cache_dir(dst, teacher) / entry["name"]
            arrays = decode_npz(path.read_bytes())
            other = decode_npz((cache_dir(dst, like) / entry["name"]).read_bytes())
            if not np.array_equal(arrays["key@data"], other["key@data"]):
                raise SystemExit(f"{entry['name']}: the {teacher} and {like} caches hold other molecules")
            arrays["present"] = arrays["present"] & other["present"]
            atomic_write(path, encode_npz(arrays))
            entry["sha256"], entry["missing"] = sha256_file(path), int((~arrays["present"]).sum())
        info["missing"] = missing[split] = sum(e["missing"] for e in info["shards"])
    write_json(cache_dir(dst, teacher) / "manifest.json", manifest)
    return missing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--teacher", required=True, help="the cache to restrict, e.g. rxnfp")
    p.add_argument("--like", required=True, help="the cache whose molecules it keeps, e.g. nmr13c")
    args = p.parse_args()
    missing = restrict(args.src, args.dst, args.teacher, args.like)
    print(f"{args.dst}: {args.teacher} now missing per split {missing}")


if __name__ == "__main__":
    main()
