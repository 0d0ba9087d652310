"""`acml depict name=NAME limit=50000`: preprocessed 2-D depictions (the image teacher's input) for a subset
of a featurised dataset, drawn by tasks (one per chunk of `chunk_size` molecules, one CPU each; Ray, or a
local process pool with `cluster.address=processes`) and written as the `image` modality under
`shards/<name>/modalities/image/` (see data/modalities.py).

Each image is RDKit's black-and-white drawing passed through Img2Mol's published preprocessing
(`chem.depict.depict_array`: aspect-preserving fit, white border, autocontrast), stored as uint8 at
`store_size` in deflated npz chunks (depictions are mostly white paper: ~6x smaller than raw).

The driver (subset, work plan, resume, progress, rejects, counts that add up, manifest) is the one of every
subset stage, `data/subset_stage.py`; this module brings the drawing, the encoding and the manifest's image
fields. Resume: the subset and its chunking are fixed by the config (splits, limit, keys_file, chunk_size,
drawing params); a killed run skips every chunk whose `_image_work/c<i>.done.json` exists and whose file
verifies. selected = written + rejected."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from acml_dist.data.modalities import encode_image_chunk, modality_dir
from acml_dist.data.subset_stage import SubsetStage, run_subset_stage, write_done, write_modality_chunk
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
    """The task: draw one chunk of (key, smiles), write its npz, rejects and done record."""
    t0 = time.time()
    keys, images, rejects = [], [], []
    for key, smi in items:
        img, reason = depict_one(smi, params)
        if reason is None:
            keys.append(key)
            images.append(img)
        else:
            rejects.append((key, smi, reason))
    modality = params["modality"]
    data = encode_image_chunk(keys, images, params["store_size"])
    entry = write_modality_chunk(STAGE, mod_root, modality, index, data, len(keys), rejects)
    size = (Path(mod_root) / modality / entry["name"]).stat().st_size
    return write_done(STAGE, mod_root, {"index": index, "selected": len(items), **entry, "bytes": size}, t0)


def _params(cfg: Any) -> dict[str, Any]:
    size, store = int(cfg.size), int(cfg.store_size)
    if size < 32 or not 16 <= store <= size:
        raise DepictStageError(
            f"need size >= 32 and 16 <= store_size <= size, got size={size}, store_size={store}"
        )
    if int(cfg.border) < 0:
        raise DepictStageError(f"border must be >= 0, got {cfg.border}")
    return {
        "modality": str(cfg.modality),
        "size": size,
        "border": int(cfg.border),
        "store_size": store,
        "max_heavy_atoms": int(cfg.max_heavy_atoms),
    }


def _manifest(modality: str, params: dict[str, Any], sums: dict[str, Any]) -> dict[str, Any]:
    """The image modality's own manifest fields."""
    import rdkit

    return {
        "kind": "image",
        "producer": {
            "kind": "depiction",
            "package": "rdkit",
            "version": rdkit.__version__,
            "preprocessing": "Img2Mol fit_image (aspect-preserving fit, white border, autocontrast)",
            "params": params,
        },
        "image": {"size": params["store_size"], "dtype": "uint8", "channels": 1, "paper": 255},
        "bytes": sums["bytes"],
        "bytes_per_image": round(sums["bytes"] / sums["written"], 1) if sums["written"] else 0.0,
    }


STAGE = SubsetStage(
    name="depict",
    work=WORK,
    what="depictions",
    error=DepictStageError,
    params=_params,
    modalities=lambda params: [params["modality"]],
    task=depict_chunk,
    manifest=_manifest,
    sums=("bytes",),
)


def depict_dataset(cfg: Any) -> dict[str, Any]:
    """Run the stage (CLI `acml depict`, pipelines, tests); returns the modality's manifest."""
    from acml_dist.context import dataset_dir

    [(modality, manifest)] = run_subset_stage(cfg, STAGE).items()
    c = manifest["counts"]
    log.info("%s: %.1f KB per image", modality, manifest["bytes_per_image"] / 1e3)
    print(
        f"{modality}: {c['selected']} selected, {c['written']} written, {c['rejected']} rejected "
        f"{manifest['reject_reasons'] or ''} -> {modality_dir(dataset_dir(cfg), modality)}"
    )
    return manifest
