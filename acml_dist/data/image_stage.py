"""`acml depict name=NAME limit=50000`: preprocessed 2-D depictions (the image teacher's input) for a subset
of a featurised dataset, drawn by Ray tasks (one per chunk of `chunk_size` molecules, one CPU each) and
written as the `image` modality under `shards/<name>/modalities/image/` (see data/modalities.py).

Each image is RDKit's black-and-white drawing passed through Img2Mol's published preprocessing
(`chem.depict.depict_array`: aspect-preserving fit, white border, autocontrast), stored as uint8 at
`store_size` in deflated npz chunks (depictions are mostly white paper: ~6x smaller than raw).

Resume: the subset and its chunking are fixed by the config (splits, limit, keys_file, chunk_size, drawing
params); each task writes its chunk, then its rejects, then `_image_work/c<i>.done.json` last, so a killed
run skips every chunk whose done record exists and whose file verifies. selected = written + rejected."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from acml_dist.data.modalities import (
    chunk_name,
    encode_image_chunk,
    fix_stage_plan,
    modality_dir,
    verify_chunk,
    write_chunk,
    write_manifest,
)
from acml_dist.data.shards import atomic_write
from acml_dist.errors import InputError
from acml_dist.log import get_logger

log = get_logger("depict")
WORK = "_image_work"


class DepictStageError(InputError, RuntimeError):
    """The dataset, the subset or the output cannot be used as asked."""


def depict_one(smiles: str, params: dict[str, Any]) -> tuple[Any, str | None]:
    """(uint8 image, None) or (None, "<reason>: <detail>") for one SMILES."""
    import numpy as np

    from acml_dist.chem.depict import depict_array
    from acml_dist.chem.parse import mol_from_smiles

    try:
        mol = mol_from_smiles(smiles) if smiles else None
    except ValueError as exc:
        return None, f"unparsable: {str(exc).splitlines()[0][:200]}"
    if mol is None:
        return None, f"unparsable: RDKit could not read {smiles[:80]!r}"
    limit = int(params["max_heavy_atoms"])
    if limit > 0 and mol.GetNumHeavyAtoms() > limit:
        return None, f"too_many_heavy_atoms: {mol.GetNumHeavyAtoms()} > {limit}"
    try:
        img = depict_array(mol, int(params["size"]), int(params["border"]))
    except ValueError as exc:
        return None, f"blank_depiction: {exc}"
    except RuntimeError as exc:  # RDKit drawing errors surface as RuntimeError
        return None, f"depiction_error: {str(exc).splitlines()[0][:200]}"
    store = int(params["store_size"])
    if store != img.shape[0]:
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((store, store), Image.LANCZOS), dtype=np.uint8)
    return img, None


def depict_chunk(index: int, items: list[tuple[str, str]], params: dict[str, Any], mod_root: str) -> dict:
    """Ray task: draw one chunk of (key, smiles), write its npz, rejects and done record."""
    t0 = time.time()
    keys, images, rejects, reasons = [], [], [], {}
    for key, smi in items:
        img, reason = depict_one(smi, params)
        if reason is None:
            keys.append(key)
            images.append(img)
        else:
            rejects.append(json.dumps({"key": key, "smiles": smi, "reason": reason}, sort_keys=True))
            r = reason.split(":")[0]
            reasons[r] = reasons.get(r, 0) + 1
    modality = params["modality"]
    root = Path(mod_root)
    entry = write_chunk(
        root / modality, index, encode_image_chunk(keys, images, params["store_size"]), len(keys)
    )
    atomic_write(root / WORK / f"c{index:06d}.rejects.jsonl", "".join(x + "\n" for x in rejects).encode())
    done = {
        "index": index,
        "selected": len(items),
        **entry,
        "rejected": len(rejects),
        "reasons": reasons,
        "bytes": (root / modality / entry["name"]).stat().st_size,
        "compute_s": round(time.time() - t0, 3),
    }
    atomic_write(root / WORK / f"c{index:06d}.done.json", json.dumps(done, sort_keys=True).encode())
    return done


def _params(cfg: Any) -> dict[str, Any]:
    size, store = int(cfg.size), int(cfg.store_size)
    if size < 32 or not 16 <= store <= size:
        raise DepictStageError(
            f"need size >= 32 and 16 <= store_size <= size, got size={size}, store_size={store}"
        )
    if int(cfg.chunk_size) < 1:
        raise DepictStageError(f"chunk_size must be >= 1, got {cfg.chunk_size}")
    if int(cfg.border) < 0:
        raise DepictStageError(f"border must be >= 0, got {cfg.border}")
    return {
        "modality": str(cfg.modality),
        "size": size,
        "border": int(cfg.border),
        "store_size": store,
        "max_heavy_atoms": int(cfg.max_heavy_atoms),
    }



def _chunk_done(mod_root: Path, index: int, modality: str) -> dict | None:
    path = mod_root / WORK / f"c{index:06d}.done.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    return done if verify_chunk(mod_root / modality, done) else None


def depict_dataset(cfg: Any) -> dict[str, Any]:
    """Run the stage (CLI `acml depict`, pipelines, tests); returns the modality's manifest."""
    import ray

    from acml_dist.config import config_hash
    from acml_dist.context import dataset_dir
    from acml_dist.data.nmr_stage import select_molecules
    from acml_dist.data.shards import read_manifest as dataset_manifest
    from acml_dist.ray_runtime import ensure_ray

    root = dataset_dir(cfg)
    dataset = dataset_manifest(root)
    if dataset is None or not dataset.get("complete"):
        raise DepictStageError(f"{root} is not a complete featurised dataset: run `acml featurize` first")
    params = _params(cfg)
    modality = params["modality"]
    mod_root = root / "modalities"
    items = select_molecules(root, cfg)
    size = int(cfg.chunk_size)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    keys = [k for k, _ in items]
    chash = config_hash(
        {"dataset": dataset.get("config_hash"), "params": params, "chunk_size": size, "keys": keys}
    )
    if cfg.get("overwrite"):
        shutil.rmtree(modality_dir(root, modality), ignore_errors=True)
    overwrite = bool(cfg.get("overwrite"))
    fix_stage_plan(mod_root / WORK, chash, len(chunks), overwrite, "depictions", DepictStageError)
    t0 = time.time()
    dones = {i: d for i in range(len(chunks)) if (d := _chunk_done(mod_root, i, modality)) is not None}
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
            dones.update(_run_chunks(chunks, todo, params, mod_root, workers))
        finally:
            if started:
                ray.shutdown()
    elapsed = time.time() - t0
    manifest = _finish(root, modality, chunks, dones, params, chash, cfg)
    computed = sum(dones[i]["selected"] for i in todo)
    compute_s = sum(dones[i]["compute_s"] for i in todo)
    manifest.update(
        {
            "elapsed_s": round(elapsed, 2),
            "molecules_computed_now": computed,
            "workers": workers,
            "rate_mol_per_s": round(computed / elapsed, 2) if computed and elapsed > 0 else None,
            "rate_mol_per_s_per_core": round(computed / compute_s, 2) if compute_s > 0 else None,
        }
    )
    write_manifest(modality_dir(root, modality), manifest)
    c = manifest["counts"]
    log.info(
        "%s: %d selected, %d written, %d rejected %s; %.1f KB per image",
        modality,
        c["selected"],
        c["written"],
        c["rejected"],
        manifest["reject_reasons"],
        manifest["bytes_per_image"] / 1e3,
    )
    print(
        f"{modality}: {c['selected']} selected, {c['written']} written, {c['rejected']} rejected "
        f"{manifest['reject_reasons'] or ''} -> {modality_dir(root, modality)}"
    )
    return manifest


def _run_chunks(chunks: list, todo: list[int], params: dict, mod_root: Path, workers: int) -> dict[int, dict]:
    import ray
    from tqdm import tqdm

    task = ray.remote(num_cpus=1)(depict_chunk)
    done: dict[int, dict] = {}
    pending: dict[Any, int] = {}
    bar = tqdm(total=sum(len(chunks[i]) for i in todo), unit="mol", desc="depict", mininterval=2.0)
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
            rejected += d["rejected"]
            bar.update(d["selected"])
            bar.set_postfix(rejects=rejected, refresh=False)
    bar.close()
    return done


def _finish(
    root: Path, modality: str, chunks: list, dones: dict[int, dict], params: dict, chash: str, cfg: Any
) -> dict[str, Any]:
    """Gather the chunks: manifest (counts add up) and rejects.jsonl."""
    import rdkit

    out_dir = modality_dir(root, modality)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, reasons = [], {}
    selected = written = rejected = nbytes = 0
    with open(out_dir / ".rejects.jsonl.tmp", "wb") as fh:
        for i in range(len(chunks)):
            d = dones[i]
            entries.append({"name": chunk_name(i), "samples": d["samples"], "sha256": d["sha256"]})
            selected += d["selected"]
            written += d["samples"]
            rejected += d["rejected"]
            nbytes += d["bytes"]
            for r, n in d["reasons"].items():
                reasons[r] = reasons.get(r, 0) + n
            fh.write((root / "modalities" / WORK / f"c{i:06d}.rejects.jsonl").read_bytes())
    (out_dir / ".rejects.jsonl.tmp").replace(out_dir / "rejects.jsonl")
    if selected != written + rejected:
        raise DepictStageError(f"{modality}: counts do not add up ({selected} != {written} + {rejected})")
    return {
        "modality": modality,
        "kind": "image",
        "dataset": str(cfg.name),
        "producer": {
            "kind": "depiction",
            "package": "rdkit",
            "version": rdkit.__version__,
            "preprocessing": "Img2Mol fit_image (aspect-preserving fit, white border, autocontrast)",
            "params": params,
        },
        "image": {"size": params["store_size"], "dtype": "uint8", "channels": 1, "paper": 255},
        "config_hash": chash,
        "counts": {"selected": selected, "written": written, "rejected": rejected},
        "reject_reasons": dict(sorted(reasons.items())),
        "bytes": nbytes,
        "bytes_per_image": round(nbytes / written, 1) if written else 0.0,
        "chunks": entries,
        "complete": True,
    }
