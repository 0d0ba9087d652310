"""The embedding cache: a Ray actor pool (or, with `cluster.address=processes`, a local process pool: a node
without Ray) embeds every graph shard once per frozen teacher.

Output per teacher (ARCHITECTURE.md): `<root>/embeddings/<teacher>/<split>/shard-XXXXXX.npz` aligned with
the graph shard of the same name (same keys, same order) and `<root>/embeddings/<teacher>/manifest.json`;
the format (read, verify, write) is `acml_dist.data.shards`. Work unit = one graph shard: the actor reads
it (checked against the dataset manifest), encodes it in batches, and writes the cache shard atomically
plus a `.shard-XXXXXX.done.json` record (sha256, counts, graph-shard sha256, teacher weights hash). A rerun
skips shards whose record verifies, so a killed run resumes where it stopped;
`overwrite=true` redoes everything.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional

from acml_dist.context import dataset_dir, use_tracking_store
from acml_dist.data.shards import (
    atomic_write,
    cache_dir,
    cache_manifest_body,
    dataset_manifest,
    encode_cache_shard,
    is_binary,
    load_graph_shard,
    read_json,
    sha256_file,
    shard_samples,
    write_json,
)
from acml_dist.errors import DataError
from acml_dist.log import get_logger
from acml_dist.ray_runtime import ensure_ray
from acml_dist.teachers.registry import teacher_store

log = get_logger("embed")
# Teachers computed by RDKit, without a network: an actor of theirs never asks Ray for a GPU.
CPU_KINDS = ("fingerprint", "descriptors")


def done_path(out_path: Path) -> Path:
    return out_path.with_name(f".{out_path.stem}.done.json")


def verify_done(
    out_path: Path, graph_sha: str, weights_hash: str, modality_hash: Optional[str] = None
) -> Optional[dict[str, Any]]:
    """The shard's done record if the output exists and matches it, its graph shard, the teacher and (for a
    spectrum teacher) the modality output it read."""
    rec_path = done_path(out_path)
    if not (out_path.exists() and rec_path.exists()):
        return None
    try:
        rec = read_json(rec_path)
    except ValueError:
        return None
    if rec.get("graph_sha256") != graph_sha or rec.get("weights_hash") != weights_hash:
        return None
    if rec.get("modality_hash") != modality_hash:
        return None
    if rec.get("sha256") != sha256_file(out_path):
        return None
    return rec


def bit_packed(teacher: Any) -> bool:
    """0/1 fingerprints are stored as packed bits (2048 bits: 256 bytes per molecule)."""
    return teacher.kind == "fingerprint" and not getattr(teacher, "counts", True)


def embed_shard(
    teacher: Any, root: Path, gentry: dict[str, Any], out_path: Path, spectra: Any = None
) -> dict[str, Any]:
    """Embed one graph shard with a loaded teacher; write the aligned cache shard and its done record.
    `spectra` (a `ModalityLookup`): a spectrum teacher's input, joined to the shard's rows by key; a molecule
    without a spectrum gets present=False (a zero row), as any molecule the teacher cannot encode."""
    import hashlib

    import numpy as np

    packed = load_graph_shard(root, gentry)
    samples = shard_samples(packed)
    if spectra is not None:
        spectra.attach(samples, f"{teacher.modality}.npy")
    reasons = [teacher.missing_reason(s) for s in samples]
    present = np.array([r is None for r in reasons], dtype=bool)
    chosen = [s for s, r in zip(samples, reasons) if r is None]
    embs = np.zeros((len(samples), teacher.dim), np.float32)
    if chosen:
        embs[present] = teacher.encode_samples(chosen).numpy()
    if not np.isfinite(embs).all() or (np.abs(embs) > 65504).any():
        raise ValueError(
            f"teacher {teacher.name}: non-finite or float16-overflowing embeddings in {gentry['name']}"
        )
    bits = bit_packed(teacher)
    if bits and chosen and not is_binary(embs[present]):
        raise ValueError(f"teacher {teacher.name}: a bit fingerprint with values other than 0/1")
    data = encode_cache_shard(packed.blobs["key"], embs, present, bits)
    atomic_write(out_path, data)
    rec = {
        "name": out_path.name,
        "samples": len(samples),
        "missing": int((~present).sum()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "graph_sha256": gentry["sha256"],
        "weights_hash": teacher.weights_hash(),
    }
    if spectra is not None:
        rec["modality_hash"] = spectra.hash
    write_json(done_path(out_path), rec)
    return rec


class EmbedWorker:
    """Body of the Ray actor: one teacher load per actor, then shard after shard."""

    def __init__(self, name: str, tcfg: dict[str, Any], threads: int, root: str) -> None:
        import torch

        from acml_dist.teachers import load_teacher

        torch.set_num_threads(max(1, threads))
        self.teacher = load_teacher(name, tcfg)
        self.spectra = spectrum_lookup(self.teacher, tcfg, root)

    def describe(self) -> dict[str, Any]:
        info = self.teacher.describe()
        if self.spectra is not None:
            info["spectra"] = {"name": self.spectra.name, "sha256": self.spectra.hash,
                               "molecules": len(self.spectra)}  # fmt: skip
        return info

    def embed(self, split: str, root: str, gentry: dict[str, Any], out_path: str) -> dict[str, Any]:
        rec = embed_shard(self.teacher, Path(root), gentry, Path(out_path), self.spectra)
        return {**rec, "split": split}


def spectrum_lookup(teacher: Any, tcfg: dict[str, Any], root: str) -> Any:
    """The modality output a teacher reads (`modalities/<params.spectra or modality>/`: a spectrum teacher's,
    or the image CNN's with `render: false`), else None. Such a teacher without that output is a clear
    error, not a cache of nothing but missing rows."""
    from acml_dist.data.modalities import ModalityLookup, reads_modality_output

    if not reads_modality_output(teacher.kind, tcfg.get("params") or {}):
        return None
    name = str((tcfg.get("params") or {}).get("spectra") or teacher.modality)
    try:
        return ModalityLookup(root, name)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"teacher {teacher.name} ({teacher.kind}): {exc}") from exc


def precheck_spectra(name: str, tcfg: dict[str, Any], root: Path) -> None:
    """A modality-reading teacher's output read and verified once here: a missing, incomplete or altered
    `modalities/<name>/` is one clear error, not an embedding actor that dies in its constructor."""
    from acml_dist.data.modalities import ModalityLookup, reads_modality_output

    if not reads_modality_output(str(tcfg.get("kind")), tcfg.get("params") or {}):
        return
    spectra = str((tcfg.get("params") or {}).get("spectra") or tcfg.get("modality"))
    try:
        ModalityLookup(root, spectra)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(
            f"teacher {name} ({tcfg.get('kind')}): {exc} (or set params.spectra=<output>)"
        ) from exc


def _embed_teacher(name: str, tcfg: dict[str, Any], root: Path, cfg: Any) -> dict[str, Any]:
    from tqdm import tqdm

    t0 = time.time()
    n_actors = max(1, int(cfg.cluster.embed_actors))
    precheck_spectra(name, tcfg, root)  # a clear error here, not a worker that dies in its constructor
    info, map_unordered, stop = _open_workers(name, tcfg, root, cfg, n_actors)
    t_ready = time.time()  # rates below exclude Ray start and teacher loading (reported as startup_s)
    out_root = cache_dir(root, name)
    mod_hash = info.get("spectra", {}).get("sha256")
    dataset = dataset_manifest(root)
    shards = {split: s["shards"] for split, s in dataset["splits"].items() if s["shards"]}
    if cfg.overwrite:
        for split in shards:
            for p in (out_root / split).glob(".shard-*.done.json"):
                p.unlink()
    todo, done = [], {}
    for split, entries in shards.items():
        for e in entries:
            out = out_root / e["name"]
            rec = None if cfg.overwrite else verify_done(out, e["sha256"], info["weights_hash"], mod_hash)
            if rec is not None:
                done[(split, Path(e["name"]).name)] = rec
            else:
                todo.append((split, str(root), e, str(out)))
    total = sum(e.get("samples", 0) for es in shards.values() for e in es) or None
    skipped = sum(r["samples"] for r in done.values())
    log.info(
        "teacher %s (%s, dim %d): %d shards to embed, %d already done",
        name,
        info["kind"],
        info["dim"],
        len(todo),
        len(done),
    )
    bar = tqdm(
        total=total,
        initial=skipped,
        unit="mol",
        desc=f"embed {name}",
        file=sys.stderr,
        disable=None,
        mininterval=2.0,
    )
    new, step = 0, max(1, len(todo) // 10)
    for i, rec in enumerate(map_unordered(todo), 1):
        done[(rec["split"], rec["name"])] = rec
        new += rec["samples"]
        bar.update(rec["samples"])
        if bar.disable and (i % step == 0 or i == len(todo)):  # no TTY (Ray job, CI log): progress lines
            rate = new / max(time.time() - t_ready, 1e-9)
            log.info("teacher %s: %d/%d shards, %d molecules, %.1f mol/s", name, i, len(todo), new, rate)
    bar.close()
    stop()
    elapsed = time.time() - t0
    bits = info["kind"] == "fingerprint" and not (tcfg.get("params") or {}).get("counts")
    splits = _cache_splits(shards, done)
    manifest = {
        **cache_manifest_body(root, {**info, "name": name}, bits, splits),
        **({"spectra": info["spectra"]} if "spectra" in info else {}),
        "config": tcfg,
        "embedded_now": new,
        "elapsed_s": round(elapsed, 2),
        "startup_s": round(t_ready - t0, 2),
        "rate_per_s": round(new / max(time.time() - t_ready, 1e-9), 2),
        "actors": n_actors,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(out_root / "manifest.json", manifest)
    return manifest


def _open_workers(name: str, tcfg: dict[str, Any], root: Path, cfg: Any, n: int) -> tuple[Any, Any, Any]:
    """(teacher info, map_unordered(work items) -> records, stop) over `n` embedding workers: Ray actors,
    or a local process pool with `cluster.address=processes` (a node without Ray); same shard bytes."""
    if cfg.cluster.get("address") == "processes":
        threads = int(tcfg.get("cpu_threads") or 0) or max(1, len(os.sched_getaffinity(0)) // n)
        store = teacher_store(cfg, tcfg)
        pool = ProcessPoolExecutor(
            n, initializer=_process_init, initargs=(name, tcfg, threads, str(root), store)
        )

        def map_processes(todo: list) -> Iterator[dict[str, Any]]:
            return (f.result() for f in as_completed([pool.submit(_process_embed, t) for t in todo]))

        info = pool.submit(_process_describe).result()
        return info, map_processes, lambda: pool.shutdown(cancel_futures=True)
    import ray
    from ray.util import ActorPool

    actors = _start_actors(name, tcfg, root, cfg, n)
    info = ray.get(actors[0].describe.remote())
    actor_pool = ActorPool(actors)

    def stop() -> None:
        for a in actors:
            ray.kill(a)

    return info, lambda todo: actor_pool.map_unordered(lambda a, t: a.embed.remote(*t), todo), stop


_PROCESS_WORKER: Optional[EmbedWorker] = None  # one per pool process (cluster.address=processes)


def _process_init(name: str, tcfg: dict[str, Any], threads: int, root: str, store: Optional[str]) -> None:
    global _PROCESS_WORKER
    if store:  # a `models:/` teacher: fetched from the job's store
        use_tracking_store(store)
    _PROCESS_WORKER = EmbedWorker(name, tcfg, threads, root)


def _process_describe() -> dict[str, Any]:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.describe()


def _process_embed(item: tuple) -> dict[str, Any]:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.embed(*item)


def _start_actors(name: str, tcfg: dict[str, Any], root: Path, cfg: Any, n_actors: int) -> list:
    """The embedding actors of one teacher (a GPU each where Ray has them and the teacher wants one)."""
    import ray

    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", os.cpu_count() or 1))
    use_gpu = (
        resources.get("GPU", 0) > 0 and tcfg.get("device", "auto") != "cpu" and tcfg["kind"] not in CPU_KINDS
    )
    # Reserve one CPU per actor so N actors fit on N cores; torch threads share the remaining cores.
    # A `models:/` teacher is fetched by each actor: from the job's store (`teacher_store`).
    store = teacher_store(cfg, tcfg)
    env = {"env_vars": {"MLFLOW_TRACKING_URI": store}} if store else None
    # A killed actor (OOM, preemption, SIGKILL) is restarted and its shard retried: shard writes are atomic
    # and checked by their done record, so a retry gives the same cache.
    actor_cls = ray.remote(
        num_cpus=1, num_gpus=1 if use_gpu else 0, runtime_env=env, max_restarts=3, max_task_retries=3
    )(EmbedWorker)
    threads = int(tcfg.get("cpu_threads") or 0) or max(1, cpus // n_actors)
    return [actor_cls.remote(name, tcfg, threads, str(root)) for _ in range(n_actors)]


def _cache_splits(shards: dict[str, list], done: dict) -> dict[str, dict[str, Any]]:
    """The cache manifest's splits, in the dataset manifest's layout (names relative to its folder)."""
    splits: dict[str, dict[str, Any]] = {}
    for split, entries in shards.items():
        recs = [done[(split, Path(e["name"]).name)] for e in entries]
        splits[split] = {
            "samples": sum(r["samples"] for r in recs),
            "missing": sum(r["missing"] for r in recs),
            "shards": [
                {
                    "name": f"{split}/{r['name']}",
                    **{k: r[k] for k in ("samples", "missing", "sha256", "graph_sha256")},
                }
                for r in recs
            ],
        }
    return splits


def embed_dataset(cfg: Any) -> dict[str, Any]:
    """Embed every split of the dataset at `cfg.shards` (or <shards_root>/<name>) with every teacher in
    `cfg.teachers` (EmbedJob-like config). Returns {"root", "teachers": {name: manifest}}; prints a table."""
    from omegaconf import DictConfig, OmegaConf

    root = dataset_dir(cfg)
    if not root.exists():
        raise FileNotFoundError(f"dataset {root} does not exist: run `acml featurize name={cfg.name}` first")
    if not cfg.teachers:
        raise DataError("no teachers configured: pass teachers=<group> (e.g. teachers=smiles_fp)")
    dataset_manifest(root)  # complete and of this schema, before Ray starts
    started = cfg.cluster.get("address") != "processes" and ensure_ray(cfg.cluster)
    summary: dict[str, Any] = {"root": str(root), "teachers": {}}
    try:
        for name, tcfg in cfg.teachers.items():
            plain = OmegaConf.to_container(tcfg, resolve=True) if isinstance(tcfg, DictConfig) else dict(tcfg)
            summary["teachers"][name] = _embed_teacher(str(name), plain, root, cfg)
    finally:
        if started:
            import ray

            ray.shutdown()
    print(summary_table(summary))
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    head = f"{'teacher':<14}{'kind':<14}{'dim':>6}{'molecules':>11}{'missing':>9}{'new':>9}{'s':>9}"
    head += f"{'mol/s':>9}  hash"
    lines = [f"embedding cache under {summary['root']}/embeddings", head, "-" * len(head)]
    for name, m in summary["teachers"].items():
        lines.append(
            f"{name:<14}{m['kind']:<14}{m['dim']:>6}{sum(s['samples'] for s in m['splits'].values()):>11}"
            f"{sum(s['missing'] for s in m['splits'].values()):>9}"
            f"{m['embedded_now']:>9}{m['elapsed_s']:>9.1f}{m['rate_per_s']:>9.1f}  {m['weights_hash'][:12]}"
        )
    return "\n".join(lines)
