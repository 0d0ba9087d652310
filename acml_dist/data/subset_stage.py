"""The one driver of the subset stages (`acml depict`, `acml nmr-predict`): a configured subset of a
featurised dataset, cut into chunks of `chunk_size` molecules, each chunk one task (Ray, or the process
pool of `cluster.address=processes`, data/executor.py) writing its outputs under `shards/<name>/modalities/`.

A stage module gives only what differs (`SubsetStage`): its parameters, its output modalities, the task body
(the chemistry and the encoding of one chunk) and the manifest fields of its kind. This module owns the rest:
the subset, the fixed work plan, resume, progress, rejects with reasons, counts that add up, the manifest.

Work folder `modalities/<work>/`: plan.json (the config hash and the molecule keys of every chunk), then
per chunk the task writes its npz per modality, its rejects (`c<i>.rejects.jsonl`, under `<work>/<modality>/`
when the stage is `nested`) and last `c<i>.done.json`; a rerun skips each chunk whose done record exists and
whose files verify.

The plan grows and never moves: a rerun whose subset holds every planned molecule and more (a larger
`limit`, a keys file with more keys) appends chunks for the new molecules only, so more spectra or images
cost only the new ones. A subset that drops planned molecules, or other parameters, is refused unless
`overwrite=true` (which discards the work folder): computed work is never silently thrown away.
A done record is {"index", "selected", "compute_s", and per modality an entry {"name", "samples", "sha256",
"rejected", "reasons", extra sums...}}: the entry is the record itself for a single-modality stage, or
`record["modalities"][modality]` for a `nested` one."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acml_dist.data.modalities import (
    chunk_name,
    iter_dataset_molecules,
    modality_dir,
    verify_chunk,
    write_chunk,
    write_manifest,
)
from acml_dist.data.shards import atomic_write
from acml_dist.log import get_logger

Item = tuple[str, str]  # (molecule key, SMILES)


@dataclass(frozen=True)
class SubsetStage:
    """What one subset stage brings; everything else is `run_subset_stage`'s."""

    name: str  # log and progress label, e.g. "depict"
    work: str  # work folder under modalities/, e.g. "_image_work"
    what: str  # what the outputs are, for the refusal of another configuration ("depictions")
    error: type[Exception]  # raised for an unusable dataset, subset or configuration
    params: Callable[[Any], dict[str, Any]]  # cfg -> the parameters (hashed into the plan, sent to tasks)
    modalities: Callable[[dict[str, Any]], list[str]]  # params -> output modalities
    task: Callable[[int, list[Item], dict[str, Any], str], dict[str, Any]]  # (index, items, params, mod_root)
    manifest: Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]]  # (modality, params, sums)
    sums: tuple[str, ...] = ()  # entry fields summed over chunks and passed to `manifest`
    nested: bool = False  # done records hold {"modalities": {m: entry}}; rejects under <work>/<modality>/
    rate_digits: int = 2

    def entry(self, done: dict[str, Any], modality: str) -> dict[str, Any]:
        return done["modalities"][modality] if self.nested else done

    def rejects_path(self, mod_root: Path, modality: str, index: int) -> Path:
        work = mod_root / self.work / modality if self.nested else mod_root / self.work
        return work / f"c{index:06d}.rejects.jsonl"


def fix_stage_plan(
    work: Path, chash: str, items: list[Item], size: int, overwrite: bool, what: str, error: type[Exception]
) -> list[list[Item]]:
    """The chunks of a subset stage's work folder (`acml nmr-predict`, `acml depict`) for the subset `items`:
    the chunks planned before, unchanged, then chunks of `size` for the molecules they lack. Another config's
    work, or a subset without some planned molecule, refuses with `error` naming `what` it holds, unless
    `overwrite` (which clears it)."""
    plan_file = work / "plan.json"
    planned: list[list[str]] = []
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        if overwrite:
            shutil.rmtree(work)
        elif not isinstance(old.get("chunks"), list):
            raise error(f"{work} was planned by an earlier acml-dist: pass overwrite=true to recompute it")
        elif old.get("config_hash") != chash:
            raise error(
                f"{work.parent} holds {what} of another configuration ({old.get('config_hash')} != "
                f"{chash}): pass overwrite=true or change the dataset name"
            )
        else:
            planned = old["chunks"]
    smiles = dict(items)
    seen = {k for chunk in planned for k in chunk}
    dropped = len(seen - smiles.keys())
    if dropped:
        raise error(
            f"{work.parent} has {what} planned for {dropped} molecules that are not in this subset (a "
            "subset may only grow: widen limit= / keys_file=, or pass overwrite=true to discard them)"
        )
    new = [k for k, _ in items if k not in seen]
    planned = planned + [new[i : i + size] for i in range(0, len(new), size)]
    atomic_write(plan_file, json.dumps({"config_hash": chash, "chunks": planned}).encode())
    return [[(k, smiles[k]) for k in chunk] for chunk in planned]


# ------------------------------------------------------------------ inside a task


def write_modality_chunk(
    stage: SubsetStage,
    mod_root: str | Path,
    modality: str,
    index: int,
    data: bytes,
    n: int,
    rejects: Sequence[tuple[str, str, str]],
) -> dict[str, Any]:
    """Write one modality's chunk (`n` molecules encoded in `data`) and its rejects (key, smiles,
    "<reason>: <detail>"); the chunk's entry {"name", "samples", "sha256", "rejected", "reasons"}."""
    root = Path(mod_root)
    entry = write_chunk(root / modality, index, data, n)
    lines, reasons = [], {}
    for key, smiles, reason in rejects:
        lines.append(json.dumps({"key": key, "smiles": smiles, "reason": reason}, sort_keys=True))
        r = reason.split(":")[0]
        reasons[r] = reasons.get(r, 0) + 1
    atomic_write(stage.rejects_path(root, modality, index), "".join(x + "\n" for x in lines).encode())
    return {**entry, "rejected": len(rejects), "reasons": reasons}


def write_done(stage: SubsetStage, mod_root: str | Path, done: dict[str, Any], t0: float) -> dict[str, Any]:
    """Stamp `compute_s` (since `t0`) on a chunk's done record and write it, last: the chunk is done."""
    done["compute_s"] = round(time.time() - t0, 3)
    path = Path(mod_root) / stage.work / f"c{done['index']:06d}.done.json"
    atomic_write(path, json.dumps(done, sort_keys=True).encode())
    return done


# ------------------------------------------------------------------ the driver


def select_molecules(root: Path, cfg: Any, error: type[Exception] = ValueError) -> list[Item]:
    """The subset: molecules of `splits` in shard order (only those listed in `keys_file` when given),
    the first `limit` of them (limit <= 0 or None: all)."""
    wanted = None
    if cfg.get("keys_file"):
        path = Path(cfg.keys_file)
        if not path.exists():
            raise error(f"keys_file {path} does not exist")
        wanted = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    limit = int(cfg.limit) if cfg.get("limit") else 0
    out: list[Item] = []
    for m in iter_dataset_molecules(root, list(cfg.splits)):
        if wanted is not None and m["key"] not in wanted:
            continue
        out.append((m["key"], m["smiles"]))
        if limit > 0 and len(out) >= limit:
            break
    return out


def run_subset_stage(cfg: Any, stage: SubsetStage) -> dict[str, dict[str, Any]]:
    """Run `stage` on the dataset of `cfg` (resuming); {modality: manifest}, each also written."""
    from acml_dist.config import config_hash
    from acml_dist.context import dataset_dir
    from acml_dist.data.shards import read_manifest as dataset_manifest

    log = get_logger(stage.name)
    root = dataset_dir(cfg)
    dataset = dataset_manifest(root)
    if dataset is None or not dataset.get("complete"):
        raise stage.error(f"{root} is not a complete featurised dataset: run `acml featurize` first")
    params = stage.params(cfg)
    if int(cfg.chunk_size) < 1:
        raise stage.error(f"chunk_size must be >= 1, got {cfg.chunk_size}")
    modalities = stage.modalities(params)
    mod_root = root / "modalities"
    items = select_molecules(root, cfg, stage.error)
    size = int(cfg.chunk_size)
    # chunk_size is not in the hash: the chunks planned before keep their size, new ones take this one
    chash = config_hash({"dataset": dataset.get("config_hash"), "params": params})
    overwrite = bool(cfg.get("overwrite"))
    if overwrite:
        for m in modalities:
            shutil.rmtree(modality_dir(root, m), ignore_errors=True)
    chunks = fix_stage_plan(mod_root / stage.work, chash, items, size, overwrite, stage.what, stage.error)
    t0 = time.time()
    dones = {i: d for i in range(len(chunks)) if (d := _chunk_done(stage, mod_root, i, modalities))}
    todo = [i for i in range(len(chunks)) if i not in dones]
    log.info(
        "%d molecules in %d chunks; %d chunks done before, %d to do",
        len(items),
        len(chunks),
        len(dones),
        len(todo),
    )
    workers = 0
    if todo:
        from acml_dist.data.executor import open_executor

        ex = open_executor(cfg.get("cluster"), workers=int(cfg.workers))
        try:
            workers = ex.workers
            dones.update(_run_chunks(stage, ex, chunks, todo, params, mod_root, modalities))
        finally:
            ex.close()
    elapsed = time.time() - t0
    computed = sum(dones[i]["selected"] for i in todo)
    compute_s = sum(dones[i]["compute_s"] for i in todo)
    digits = stage.rate_digits
    run = {
        "elapsed_s": round(elapsed, 2),
        "molecules_computed_now": computed,
        "workers": workers,
        "rate_mol_per_s": round(computed / elapsed, digits) if computed and elapsed > 0 else None,
        "rate_mol_per_s_per_core": round(computed / compute_s, digits) if compute_s > 0 else None,
    }
    manifests = {}
    for m in modalities:
        manifests[m] = {**_finish(stage, root, m, len(chunks), dones, params, chash, cfg), **run}
        write_manifest(modality_dir(root, m), manifests[m])
        c = manifests[m]["counts"]
        log.info(
            "%s: %d selected, %d written, %d rejected %s",
            m,
            c["selected"],
            c["written"],
            c["rejected"],
            manifests[m]["reject_reasons"],
        )
    return manifests


def _chunk_done(stage: SubsetStage, mod_root: Path, index: int, modalities: list[str]) -> dict | None:
    path = mod_root / stage.work / f"c{index:06d}.done.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    if stage.nested and not all(m in done["modalities"] for m in modalities):
        return None
    ok = all(verify_chunk(mod_root / m, stage.entry(done, m)) for m in modalities)
    return done if ok else None


def _run_chunks(
    stage: SubsetStage,
    ex: Any,
    chunks: list[list[Item]],
    todo: list[int],
    params: dict[str, Any],
    mod_root: Path,
    modalities: list[str],
) -> dict[int, dict]:
    """The chunks of `todo` as tasks, 2 x workers in flight, with a progress bar (molecules, rejects)."""
    from tqdm import tqdm

    done: dict[int, dict] = {}
    pending: dict[Any, int] = {}
    bar = tqdm(total=sum(len(chunks[i]) for i in todo), unit="mol", desc=stage.name, mininterval=2.0)
    rejected = 0
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < 2 * ex.workers:
            i = queue.pop(0)
            pending[ex.submit(stage.task, i, chunks[i], params, str(mod_root))] = i
        for handle in ex.wait_one(list(pending)):
            d = ex.get(handle)
            done[pending.pop(handle)] = d
            rejected += max(stage.entry(d, m)["rejected"] for m in modalities)
            bar.update(d["selected"])
            bar.set_postfix(rejects=rejected, refresh=False)
    bar.close()
    return done


def _finish(
    stage: SubsetStage,
    root: Path,
    modality: str,
    n_chunks: int,
    dones: dict[int, dict],
    params: dict[str, Any],
    chash: str,
    cfg: Any,
) -> dict[str, Any]:
    """Gather the chunks of one modality: its manifest (counts add up) and rejects.jsonl."""
    out_dir = modality_dir(root, modality)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, reasons = [], {}
    selected = written = rejected = 0
    sums = dict.fromkeys(stage.sums, 0)
    with open(out_dir / ".rejects.jsonl.tmp", "wb") as fh:
        for i in range(n_chunks):
            e = stage.entry(dones[i], modality)
            entries.append({"name": chunk_name(i), "samples": e["samples"], "sha256": e["sha256"]})
            selected += dones[i]["selected"]
            written += e["samples"]
            rejected += e["rejected"]
            for k in sums:
                sums[k] += e[k]
            for r, n in e["reasons"].items():
                reasons[r] = reasons.get(r, 0) + n
            fh.write(stage.rejects_path(root / "modalities", modality, i).read_bytes())
    (out_dir / ".rejects.jsonl.tmp").replace(out_dir / "rejects.jsonl")
    if selected != written + rejected:
        raise stage.error(f"{modality}: counts do not add up ({selected} != {written} + {rejected})")
    counts = {"selected": selected, "written": written, "rejected": rejected}
    return {
        "modality": modality,
        "dataset": str(cfg.name),
        "config_hash": chash,
        "counts": counts,
        "reject_reasons": dict(sorted(reasons.items())),
        "chunks": entries,
        "complete": True,
        **stage.manifest(modality, params, {**counts, **sums}),
    }
