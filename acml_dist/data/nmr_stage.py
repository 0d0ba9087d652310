"""`acml nmr-predict name=NAME ...`: predicted 13C / 1H spectra (csp5) for a subset of a featurised dataset,
computed by tasks (one per chunk of `chunk_size` molecules, one CPU each; Ray, or a local process pool with
`cluster.address=processes`), written per modality under `shards/<name>/modalities/<nmr13c|nmr1h>/` (see
data/modalities.py) with a manifest (sha256 per chunk).

The driver (subset, work plan, resume, progress, rejects, counts that add up, manifest) is the one of every
subset stage, `data/subset_stage.py`; this module brings the prediction, the spectrum encoding and the
manifest's NMR fields. Resume: a killed run skips every chunk whose `_nmr_work/c<i>.done.json` exists and
whose files verify; a grown subset (splits, limit, keys_file) predicts only its new molecules, in chunks
appended to the plan. Counts add up per modality: selected = written + rejected."""

from __future__ import annotations

import time
from typing import Any

from acml_dist.data.modalities import bins_dict, encode_chunk
from acml_dist.data.subset_stage import SubsetStage, run_subset_stage, write_done, write_modality_chunk
from acml_dist.errors import InputError

WORK = "_nmr_work"


class NmrStageError(InputError, RuntimeError):
    """The dataset, the subset or the output cannot be used as asked."""


def _specs(params: dict[str, Any]):
    from acml_dist.data.nmr_predict import default_specs

    return default_specs(int(params["h1_bins"]), float(params["h1_low"]), float(params["h1_high"]))


def predict_chunk(index: int, items: list[tuple[str, str]], params: dict[str, Any], mod_root: str) -> dict:
    """The task: predict one chunk of (key, smiles), write its per-modality npz, rejects and done record."""
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
        rejects = [
            (k, s, o.reason)
            for k, s, o in zip(keys, smiles, result[nucleus])
            if not isinstance(o, NmrPrediction)
        ]
        entry = write_modality_chunk(STAGE, mod_root, modality, index, data, len(rows), rejects)
        done["modalities"][modality] = {**entry, "peaks_out_of_range": sum(o.out_of_range for _, o in rows)}
    return write_done(STAGE, mod_root, done, t0)


def _params(cfg: Any) -> dict[str, Any]:
    from acml_dist.data.nmr_predict import NUCLEI

    nuclei = [str(n) for n in cfg.nuclei]
    bad = [n for n in nuclei if n not in NUCLEI]
    if bad or not nuclei:
        raise NmrStageError(f"nuclei must be a non-empty subset of {sorted(NUCLEI)}, got {nuclei}")
    return {
        "nuclei": nuclei,
        "h1_bins": int(cfg.h1_bins),
        "h1_low": float(cfg.h1_low),
        "h1_high": float(cfg.h1_high),
        "max_heavy_atoms": int(cfg.max_heavy_atoms),
        "seed": None if cfg.get("seed") is None else int(cfg.seed),
        "threads": 1,
    }


def _modalities(params: dict[str, Any]) -> list[str]:
    from acml_dist.data.nmr_predict import NUCLEI

    return [NUCLEI[n] for n in params["nuclei"]]


def _manifest(modality: str, params: dict[str, Any], sums: dict[str, Any]) -> dict[str, Any]:
    """One NMR modality's own manifest fields."""
    import importlib.metadata

    from acml_dist.data.nmr_predict import NUCLEI

    nucleus = next(n for n in params["nuclei"] if NUCLEI[n] == modality)
    return {
        "producer": {
            "kind": "predicted",
            "package": "csp5",
            "version": importlib.metadata.version("csp5"),
            "nucleus": nucleus,
            "params": params,
        },
        "bins": bins_dict(_specs(params)[nucleus]),
        "peaks_out_of_range": sums["peaks_out_of_range"],
    }


STAGE = SubsetStage(
    name="nmr-predict",
    work=WORK,
    what="NMR predictions",
    error=NmrStageError,
    params=_params,
    modalities=_modalities,
    task=predict_chunk,
    manifest=_manifest,
    sums=("peaks_out_of_range",),
    nested=True,
    rate_digits=3,
)


def predict_dataset(cfg: Any) -> dict[str, Any]:
    """Run the stage (CLI `acml nmr-predict`, pipelines, tests); returns {modality: manifest}."""
    return run_subset_stage(cfg, STAGE)
