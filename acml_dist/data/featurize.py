"""Corpus -> verified packed shards on Ray (or a local process pool, `cluster.address=processes`):
`featurize_corpus(cfg)` (CLI, cluster/featurize.py, tests).

Phases (each a set of Ray tasks, the driver only streams records and holds counts):
  A. chunks of `data.chunk_size` records: standardise, filter, exclude, featurise
     (`featurize_tasks.process_chunk`: the Ray task bodies);
  B. global dedupe, hash-partitioned by key: the first occurrence in input order wins (dedupe_partition);
  C. per chunk: drop duplicates, count molecules per split (chunk_keep);
  D. per output shard: copy its samples' bytes out of the chunk files (assemble_shard).
Work files live in `<output>/_work` until the manifest is complete, so a killed run resumes: finished
chunks and shards whose manifest entry and sha256 verify are skipped."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from acml_dist.context import RunContext
from acml_dist.data.diskfull import guard_disk
from acml_dist.data.shards import (
    FORMAT,
    SCHEMA_VERSION,
    SPLITS,
    atomic_write,
    read_manifest,
    shard_name,
    verify_shard,
    write_manifest,
)
from acml_dist.errors import ConfigError, InputError
from acml_dist.log import get_logger

log = get_logger("featurize")


class FeaturizeError(InputError, RuntimeError):
    """The output directory or the input cannot be used as asked."""


def resolve_source(cfg: Any):
    """The record source of a FeaturizeJob: `input=PATH` (or data.path) as a file source, else the named
    corpus / dataset of `data.source`."""
    from acml_dist.data.datasets import corpus_spec
    from acml_dist.data.sources import SourceSpec

    data = cfg.data
    path = cfg.get("input") or data.get("path")
    if path:
        prefix = data.id_prefix or (data.source if data.source not in ("file", "moses") else "mol")
        return SourceSpec([str(path)], data.format, data.smiles_column, data.id_column, prefix)
    spec = corpus_spec(data.source)
    if data.id_prefix:
        spec.id_prefix = data.id_prefix
    return spec


def _chunks(records: Iterator, size: int) -> Iterator[list]:
    while True:
        chunk = list(islice(records, size))
        if not chunk:
            return
        yield chunk


def _output_dir(cfg: Any) -> Path:
    """The dataset folder featurisation writes: `output`, else <shards_root>/<name>."""
    return RunContext.from_config(cfg, dataset=cfg.output).dataset_dir


@guard_disk(_output_dir)
def featurize_corpus(cfg: Any) -> dict[str, Any]:
    """Featurise the corpus of a FeaturizeJob config into `<output>` (default `<shards_root>/<name>`);
    returns the manifest (also written to `<output>/manifest.json`)."""
    from omegaconf import OmegaConf

    from acml_dist.config import config_hash
    from acml_dist.data import featurize_tasks as W
    from acml_dist.data.executor import open_executor
    from acml_dist.data.sources import check_sources, source_files

    t0 = time.time()
    data = OmegaConf.to_container(cfg.data, resolve=True)
    if data.get("split") not in ("scaffold", "random"):  # the other kinds split a labelled file (finetune)
        raise ConfigError(f"data.split={data.get('split')!r}: a corpus is split by scaffold or random")
    if cfg.get("input") or data.get("path"):
        # data.source names a packaged corpus; records and rejects from a user's path say "file"
        data["source"] = "file"
    out = _output_dir(cfg)
    spec = resolve_source(cfg)
    files = [str(Path(f).resolve()) for f in source_files(spec)]
    check_sources(spec, files)
    # stereoisomers=0 (the default) stays out of the hash: shards made before the option keep verifying;
    # split_column is for labelled files (acml finetune), never a corpus's
    hashed = {k: v for k, v in data.items() if (k != "stereoisomers" or v) and k != "split_column"}
    chash = config_hash({"schema_version": SCHEMA_VERSION, "data": hashed, "input": files})
    old = _previous_run(out, chash, bool(cfg.get("overwrite")))
    if old and old.get("complete"):
        log.info("%s: complete and verified, nothing to do", out)
        return old
    work = out / "_work"
    work.mkdir(parents=True, exist_ok=True)
    ex = open_executor(cfg.get("cluster"))
    try:
        parts = _partitions(work, ex.workers, chash)
        excluded: set[str] = set()
        if data.get("exclude"):
            from acml_dist.data.datasets import leakage_inchikeys

            excluded = leakage_inchikeys(list(data["exclude"]), cfg.data.standardize)
            log.info("exclusion list: %d InChIKeys from %s", len(excluded), list(data["exclude"]))
        # A. chunks
        counts, read = _run_chunks(ex, spec, data, files, work, parts, ex.put(frozenset(excluded)))
        # B. dedupe (hash partitions), C. per-chunk keep masks and split counts
        duplicates = sum(ex.get([ex.submit(W.dedupe_partition, str(work), p) for p in range(parts)]))
        per_chunk = ex.get([ex.submit(W.chunk_keep, str(work), i, parts) for i in range(len(counts))])
        # D. shards
        totals = {
            "read": read,
            "written": sum(sum(c.values()) for c in per_chunk),
            "rejected": sum(c["rejected"] for c in counts.values()),
            "duplicates": duplicates,
            "excluded": sum(c["excluded"] for c in counts.values()),
        }
        if data.get("stereoisomers"):  # molecules the corpus gained: read + stereoisomers = the rest
            totals["stereoisomers"] = sum(c.get("stereoisomers", 0) for c in counts.values())
        gone = totals["rejected"] + totals["duplicates"] + totals["excluded"]
        if read + totals.get("stereoisomers", 0) != totals["written"] + gone:
            raise FeaturizeError(f"counts do not add up: {totals}")
        manifest = _manifest_head(cfg.name, chash, data, files, totals, counts)
        plan = _plan_shards(per_chunk, int(data["samples_per_shard"]))
        entries = _write_shards(ex, plan, old, out, work, manifest)
        _merge_rejects(out, work, len(counts))
        elapsed = time.time() - t0
        manifest.update(_splits_section(plan, entries, complete=True))
        manifest.update(
            {"complete": True, "elapsed_s": round(elapsed, 2), "rate_per_s": round(read / elapsed, 1)}
        )
        write_manifest(out, manifest)
        shutil.rmtree(work, ignore_errors=True)
    finally:
        ex.close()
    print_summary(out, manifest)
    return manifest


def _previous_run(out: Path, chash: str, overwrite: bool) -> dict[str, Any] | None:
    """The manifest of an earlier run into `out` (None: nothing there); a complete one is returned only when
    every shard verifies. Another configuration's shards are refused unless `overwrite`."""
    if overwrite and out.exists():
        for item in [*SPLITS, "_work", "manifest.json", "rejects.jsonl"]:
            target = out / item
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    old = read_manifest(out)
    if old and old.get("config_hash") != chash:
        raise FeaturizeError(
            f"{out} holds shards of another configuration (config_hash {old.get('config_hash')} "
            f"!= {chash}); pass overwrite=true or choose another output"
        )
    if old and old.get("complete"):
        if not all(verify_shard(out, e) for s in old["splits"].values() for e in s["shards"]):
            old = {**old, "complete": False}  # rewrite what does not verify
    return old


def _partitions(work: Path, workers: int, chash: str) -> int:
    """Dedupe hash partitions, fixed by the first attempt: chunks of a killed run keep their key files."""
    plan_file = work / "plan.json"
    if plan_file.exists():
        return int(json.loads(plan_file.read_text())["parts"])
    parts = max(1, min(64, 2 * workers))
    atomic_write(plan_file, json.dumps({"parts": parts, "config_hash": chash}).encode())
    return parts


def _run_chunks(
    ex: Any, spec: Any, data: dict, files: list[str], work: Path, parts: int, excl_ref: Any
) -> tuple[dict[int, dict], int]:
    """Phase A: every chunk of `data.chunk_size` records through `process_chunk` (finished chunks of an
    earlier attempt are read back); returns the per-chunk counts and the number of records read."""
    from acml_dist.data import featurize_tasks as W
    from acml_dist.data.sources import iter_records

    counts: dict[int, dict] = {}
    pending: dict[Any, int] = {}
    bar = _progress(data.get("limit") or _count_records(files))
    rejected = 0

    def collect() -> None:
        nonlocal rejected
        for ref in ex.wait_one(list(pending)):
            c = ex.get(ref)
            counts[pending.pop(ref)] = c
            rejected += c["rejected"]
            bar.update(c["read"])
            bar.set_postfix(rejects=rejected, refresh=False)

    seq0 = 0
    for index, chunk in enumerate(_chunks(iter_records(spec, data.get("limit")), int(data["chunk_size"]))):
        done = work / "chunks" / f"c{index:06d}.done.json"
        if done.exists():
            counts[index] = c = json.loads(done.read_text())
            bar.update(c["read"])
        else:
            task = ex.submit(W.process_chunk, index, seq0, chunk, data, excl_ref, str(work), parts)
            pending[task] = index
        seq0 += len(chunk)
        while len(pending) >= 2 * ex.workers:
            collect()
    while pending:
        collect()
    bar.close()
    return counts, seq0


def _manifest_head(
    name: str, chash: str, data: dict, files: list[str], totals: dict, counts: dict[int, dict]
) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for c in counts.values():
        for r, n in c["reasons"].items():
            reasons[r] = reasons.get(r, 0) + n
    return {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "name": name,
        "config_hash": chash,
        "data": data,
        "input": files,
        "counts": totals,
        "reject_reasons": dict(sorted(reasons.items())),
        "excluded_from": list(data.get("exclude") or []),
        "samples_per_shard": int(data["samples_per_shard"]),
        "columns": ["graph", "key", "smiles.txt", "meta.json"]
        + (["image.png"] if data.get("images") else []),
        "complete": False,
    }


def _write_shards(
    ex: Any, plan: dict, old: dict | None, out: Path, work: Path, manifest: dict
) -> dict[str, dict]:
    """Phase D: assemble every planned shard a previous run did not leave verified; a partial manifest is
    saved as shards land, so a killed run resumes from them. Returns the manifest entries by name."""
    from acml_dist.data import featurize_tasks as W

    old_entries = {e["name"]: e for s in (old or {}).get("splits", {}).values() for e in s["shards"]}
    entries: dict[str, dict] = {}
    todo = []
    for split, shards in plan.items():
        for k, pieces in enumerate(shards):
            name = shard_name(split, k)
            prev = old_entries.get(name)
            if prev and prev["samples"] == sum(b - a for _, a, b in pieces) and verify_shard(out, prev):
                entries[name] = prev
            else:
                todo.append((name, split, pieces))
    log.info("%d shards to write, %d verified from a previous run", len(todo), len(entries))
    pending: dict[Any, str] = {}
    last_save = time.time()
    for name, split, pieces in todo:
        pending[ex.submit(W.assemble_shard, str(work), str(out / name), SPLITS.index(split), pieces)] = name
        while len(pending) >= 2 * ex.workers:
            last_save = _collect_shards(ex, pending, entries, manifest, plan, out, last_save)
    while pending:
        last_save = _collect_shards(ex, pending, entries, manifest, plan, out, last_save)
    return entries


def _merge_rejects(out: Path, work: Path, n_chunks: int) -> None:
    with open(out / ".rejects.jsonl.tmp", "wb") as fh:
        for i in range(n_chunks):
            fh.write((work / "chunks" / f"c{i:06d}.rejects.jsonl").read_bytes())
    (out / ".rejects.jsonl.tmp").replace(out / "rejects.jsonl")


def _plan_shards(per_chunk: list[dict[str, int]], size: int) -> dict[str, list[list[tuple[int, int, int]]]]:
    """Per split, the shards as lists of (chunk, first, stop) ranges over each chunk's kept molecules."""
    plan: dict[str, list[list[tuple[int, int, int]]]] = {}
    for split in SPLITS:
        shards: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        filled = 0
        for chunk, c in enumerate(per_chunk):
            first, n = 0, c[split]
            while first < n:
                take = min(size - filled, n - first)
                current.append((chunk, first, first + take))
                first += take
                filled += take
                if filled == size:
                    shards.append(current)
                    current, filled = [], 0
        if current:
            shards.append(current)
        plan[split] = shards
    return plan


def _splits_section(plan: dict, entries: dict[str, dict], complete: bool) -> dict[str, Any]:
    splits = {}
    for split, shards in plan.items():
        names = [shard_name(split, k) for k in range(len(shards))]
        listed = [
            {"name": n, **{k: entries[n][k] for k in ("samples", "sha256")}} for n in names if n in entries
        ]
        splits[split] = {"samples": sum(e["samples"] for e in listed), "shards": listed}
    return {"splits": splits}


def _collect_shards(
    ex: Any, pending: dict, entries: dict, manifest: dict, plan: dict, out: Path, last_save: float
) -> float:
    for ref in ex.wait_one(list(pending)):
        name = pending.pop(ref)
        entries[name] = {"name": name, **ex.get(ref)}
    if time.time() - last_save > 2.0 or not pending:
        # A partial manifest after every few shards: a killed run resumes from the shards it lists.
        manifest.update(_splits_section(plan, entries, complete=False))
        write_manifest(out, manifest)
        return time.time()
    return last_save


def _count_records(files: list[str], max_bytes: int = 300_000_000) -> int | None:
    """Record count for the progress bar's ETA: one fast pass over inputs up to `max_bytes` (MOSES: ~2 s);
    None for bigger inputs (PubChem), where the bar shows the rate only."""
    import os
    import zlib

    from acml_dist.data.sources import detect_format, open_text

    if sum(os.path.getsize(f) for f in files) > max_bytes:
        return None
    total = 0
    try:
        for f in files:
            fmt = detect_format(f)
            with open_text(f) as fh:
                if fmt == "sdf":
                    total += sum(1 for line in fh if line.startswith("$$$$"))
                else:
                    total += sum(1 for _ in fh) - (1 if fmt in ("csv", "tsv") else 0)
    # Format not told by the name, or a corrupt .gz (the reader then stops with a SourceError): no ETA.
    except (ValueError, EOFError, OSError, zlib.error):
        return None
    return total


def _progress(total: Any):
    from tqdm import tqdm

    return tqdm(total=total, unit="mol", unit_scale=True, desc="featurize", mininterval=2.0, smoothing=0.1)


def print_summary(out: Path, manifest: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"featurised {manifest['name']} -> {out}")
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in manifest["counts"].items():
        table.add_row(key, f"{value:,}")
    for split, s in manifest["splits"].items():
        table.add_row(f"{split} (samples / shards)", f"{s['samples']:,} / {len(s['shards'])}")
    for reason, n in manifest.get("reject_reasons", {}).items():
        table.add_row(f"rejected: {reason}", f"{n:,}")
    table.add_row("elapsed (s)", f"{manifest.get('elapsed_s', 0):,.1f}")
    table.add_row("rate (molecules/s)", f"{manifest.get('rate_per_s', 0):,.1f}")
    Console(stderr=True).print(table)
