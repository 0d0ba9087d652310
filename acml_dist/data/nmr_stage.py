"""`acml nmr-predict name=NAME ...`: predicted 13C / 1H spectra (csp5) for a subset of a featurised dataset,
computed by Ray tasks (one per chunk of `chunk_size` molecules, one CPU each), written per modality under
`shards/<name>/modalities/<nmr13c|nmr1h>/` (see data/modalities.py) with a manifest (sha256 per chunk).

Resume: the subset and its chunking are fixed by the config (splits, limit, keys_file, chunk_size); each
chunk task writes its npz per modality, then its rejects, then `_nmr_work/c<i>.done.json` last, so a killed
run skips every chunk whose done record exists and whose files verify. Counts add up per modality:
selected = written + rejected."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from acml_dist.context import dataset_dir
from acml_dist.data.modalities import (
    bins_dict,
    chunk_name,
    encode_chunk,
    fix_stage_plan,
    iter_dataset_molecules,
    modality_dir,
    verify_chunk,
    write_chunk,
    write_manifest,
)
from acml_dist.data.shards import atomic_write
from acml_dist.errors import InputError
from acml_dist.log import get_logger
from acml_dist.ray_runtime import ensure_ray

log = get_logger("nmr-predict")
WORK = "_nmr_work"


class NmrStageError(InputError, RuntimeError):
    """The dataset, the subset or the output cannot be used as asked."""


def _specs(params: dict[str, Any]):
    from acml_dist.data.nmr_predict import default_specs

    return default_specs(int(params["h1_bins"]), float(params["h1_low"]), float(params["h1_high"]))


def predict_chunk(index: int, items: list[tuple[str, str]], params: dict[str, Any], mod_root: str) -> dict:
    """Ray task: predict one chunk of (key, smiles), write its per-modality npz, rejects and done record."""
    import torch

    from acml_dist.data.nmr_predict import NUCLEI, NmrPrediction, predict_nmr_isolated

    torch.set_num_threads(max(1, int(params.get("threads", 1))))
    t0 = time.time()
    specs = _specs(params)
    nuclei = list(params["nuclei"])
    keys = [k for k, _ in items]
    smiles = [s for _, s in items]
    result = predict_nmr_isolated(
        smiles, nuclei, specs=specs, max_heavy_atoms=int(params["max_heavy_atoms"]), seed=params.get("seed")
    )
    root = Path(mod_root)
    done: dict[str, Any] = {"index": index, "selected": len(items), "modalities": {}}
    for nucleus in nuclei:
        modality = NUCLEI[nucleus]
        rows = [(k, o) for k, o in zip(keys, result[nucleus]) if isinstance(o, NmrPrediction)]
        data = encode_chunk(
            [k for k, _ in rows],
            [o.spectrum for _, o in rows],
            [o.shifts for _, o in rows],
            specs[nucleus].n_bins,
            [o.atoms for _, o in rows],
        )
        entry = write_chunk(root / modality, index, data, len(rows))
        rejects, reasons = [], {}
        for k, s, o in zip(keys, smiles, result[nucleus]):
            if not isinstance(o, NmrPrediction):
                rejects.append(json.dumps({"key": k, "smiles": s, "reason": o.reason}, sort_keys=True))
                r = o.reason.split(":")[0]
                reasons[r] = reasons.get(r, 0) + 1
        atomic_write(
            root / WORK / modality / f"c{index:06d}.rejects.jsonl",
            "".join(x + "\n" for x in rejects).encode(),
        )
        out_of_range = sum(o.out_of_range for _, o in rows)
        done["modalities"][modality] = {
            **entry,
            "rejected": len(rejects),
            "reasons": reasons,
            "peaks_out_of_range": out_of_range,
        }
    done["compute_s"] = round(time.time() - t0, 3)
    atomic_write(root / WORK / f"c{index:06d}.done.json", json.dumps(done, sort_keys=True).encode())
    return done


def select_molecules(root: Path, cfg: Any) -> list[tuple[str, str]]:
    """The subset: molecules of `splits` in shard order (only those listed in `keys_file` when given),
    the first `limit` of them (limit <= 0 or None: all)."""
    wanted = None
    if cfg.get("keys_file"):
        path = Path(cfg.keys_file)
        if not path.exists():
            raise NmrStageError(f"keys_file {path} does not exist")
        wanted = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    limit = int(cfg.limit) if cfg.get("limit") else 0
    out: list[tuple[str, str]] = []
    for m in iter_dataset_molecules(root, list(cfg.splits)):
        if wanted is not None and m["key"] not in wanted:
            continue
        out.append((m["key"], m["smiles"]))
        if limit > 0 and len(out) >= limit:
            break
    return out


def _params(cfg: Any) -> dict[str, Any]:
    from acml_dist.data.nmr_predict import NUCLEI

    nuclei = [str(n) for n in cfg.nuclei]
    bad = [n for n in nuclei if n not in NUCLEI]
    if bad or not nuclei:
        raise NmrStageError(f"nuclei must be a non-empty subset of {sorted(NUCLEI)}, got {nuclei}")
    if int(cfg.chunk_size) < 1:
        raise NmrStageError(f"chunk_size must be >= 1, got {cfg.chunk_size}")
    return {
        "nuclei": nuclei,
        "h1_bins": int(cfg.h1_bins),
        "h1_low": float(cfg.h1_low),
        "h1_high": float(cfg.h1_high),
        "max_heavy_atoms": int(cfg.max_heavy_atoms),
        "seed": None if cfg.get("seed") is None else int(cfg.seed),
        "threads": 1,
    }



def _chunk_done(mod_root: Path, index: int, modalities: list[str]) -> dict | None:
    path = mod_root / WORK / f"c{index:06d}.done.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    ok = all(
        m in done["modalities"] and verify_chunk(mod_root / m, done["modalities"][m]) for m in modalities
    )
    return done if ok else None


def predict_dataset(cfg: Any) -> dict[str, Any]:
    """Run the stage (CLI `acml nmr-predict`, pipelines, tests); returns {modality: manifest}."""
    import ray

    from acml_dist.config import config_hash
    from acml_dist.data.nmr_predict import NUCLEI
    from acml_dist.data.shards import read_manifest as dataset_manifest

    root = dataset_dir(cfg)
    dataset = dataset_manifest(root)
    if dataset is None or not dataset.get("complete"):
        raise NmrStageError(f"{root} is not a complete featurised dataset: run `acml featurize` first")
    params = _params(cfg)
    modalities = [NUCLEI[n] for n in params["nuclei"]]
    mod_root = root / "modalities"
    items = select_molecules(root, cfg)
    size = int(cfg.chunk_size)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    chash = config_hash(
        {
            "dataset": dataset.get("config_hash"),
            "params": params,
            "chunk_size": size,
            "keys": [k for k, _ in items],
        }
    )
    if cfg.get("overwrite"):
        for m in modalities:
            shutil.rmtree(modality_dir(root, m), ignore_errors=True)
    overwrite = bool(cfg.get("overwrite"))
    fix_stage_plan(mod_root / WORK, chash, len(chunks), overwrite, "NMR predictions", NmrStageError)
    t0 = time.time()
    dones: dict[int, dict] = {}
    for i in range(len(chunks)):
        d = _chunk_done(mod_root, i, modalities)
        if d is not None:
            dones[i] = d
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
        started = ensure_ray(cfg.get("cluster"))
        try:
            workers = int(cfg.workers) or max(1, int(ray.cluster_resources().get("CPU", 1)))
            dones.update(_run_chunks(chunks, todo, params, mod_root, workers, len(items)))
        finally:
            if started:
                ray.shutdown()
    elapsed = time.time() - t0
    computed = sum(dones[i]["selected"] for i in todo)
    compute_s = sum(dones[i]["compute_s"] for i in todo)
    manifests = {}
    for nucleus, m in zip(params["nuclei"], modalities):
        manifests[m] = _finish_modality(root, m, nucleus, chunks, dones, params, chash, cfg)
        manifests[m].update(
            {
                "elapsed_s": round(elapsed, 2),
                "molecules_computed_now": computed,
                "workers": workers,
                "rate_mol_per_s": round(computed / elapsed, 3) if computed and elapsed > 0 else None,
                "rate_mol_per_s_per_core": round(computed / compute_s, 3) if compute_s > 0 else None,
            }
        )
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


def _run_chunks(
    chunks: list[list[tuple[str, str]]],
    todo: list[int],
    params: dict,
    mod_root: Path,
    workers: int,
    total: int,
) -> dict[int, dict]:
    import ray
    from tqdm import tqdm

    task = ray.remote(num_cpus=1)(predict_chunk)
    done: dict[int, dict] = {}
    pending: dict[Any, int] = {}
    bar = tqdm(total=sum(len(chunks[i]) for i in todo), unit="mol", desc="nmr-predict", mininterval=2.0)
    rejected = 0
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < 2 * workers:
            i = queue.pop(0)
            pending[task.remote(i, chunks[i], params, str(mod_root))] = i
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            d = ray.get(ref)
            done[pending.pop(ref)] = d
            rejected += max(v["rejected"] for v in d["modalities"].values())
            bar.update(d["selected"])
            bar.set_postfix(rejects=rejected, refresh=False)
    bar.close()
    return done


def _finish_modality(
    root: Path,
    modality: str,
    nucleus: str,
    chunks: list,
    dones: dict[int, dict],
    params: dict,
    chash: str,
    cfg: Any,
) -> dict[str, Any]:
    """Gather the chunks of one modality: manifest (counts add up) and rejects.jsonl."""
    import importlib.metadata

    from acml_dist.data.nmr_predict import default_specs

    out_dir = modality_dir(root, modality)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, reasons = [], {}
    selected = written = rejected = out_of_range = 0
    with open(out_dir / ".rejects.jsonl.tmp", "wb") as fh:
        for i in range(len(chunks)):
            m = dones[i]["modalities"][modality]
            entries.append({"name": chunk_name(i), "samples": m["samples"], "sha256": m["sha256"]})
            selected += dones[i]["selected"]
            written += m["samples"]
            rejected += m["rejected"]
            out_of_range += m["peaks_out_of_range"]
            for r, n in m["reasons"].items():
                reasons[r] = reasons.get(r, 0) + n
            fh.write((root / "modalities" / WORK / modality / f"c{i:06d}.rejects.jsonl").read_bytes())
    (out_dir / ".rejects.jsonl.tmp").replace(out_dir / "rejects.jsonl")
    if selected != written + rejected:
        raise NmrStageError(f"{modality}: counts do not add up ({selected} != {written} + {rejected})")
    spec = default_specs(params["h1_bins"], params["h1_low"], params["h1_high"])[nucleus]
    return {
        "modality": modality,
        "dataset": str(cfg.name),
        "producer": {
            "kind": "predicted",
            "package": "csp5",
            "version": importlib.metadata.version("csp5"),
            "nucleus": nucleus,
            "params": params,
        },
        "bins": bins_dict(spec),
        "config_hash": chash,
        "counts": {"selected": selected, "written": written, "rejected": rejected},
        "peaks_out_of_range": out_of_range,
        "reject_reasons": dict(sorted(reasons.items())),
        "chunks": entries,
        "complete": True,
    }
