"""Predicted 13C / 1H NMR from structure with csp5 (MIT): SMILES -> per-atom shifts -> binned spectra.

`predict_nmr(smiles, nuclei)` is a plain function: one 3D conformer per molecule (csp5's own ETKDG + force
field embedding, seeded from the molecule so the same SMILES gives the same conformer), the first nucleus
predicted by `csp5.predict_smiles`, the others by `csp5.predict_mols` on the same embedded molecules (one
embedding per molecule, whatever the number of nuclei). Each input gets, per nucleus, either an
`NmrPrediction` (shifts in ppm, one per atom of that element, and the binned spectrum) or a `Reject` with
csp5's reason (`parse`, `embed_exc:...`, `no_carbon_atoms`, `prediction_out_of_range`, ...).

csp5 is imported lazily (it loads torch and ~100 MB of weights once per process)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from acml_dist.chem.spectra import BinSpec, bin_peaks, nmr1h_spec, nmr13c_spec

NUCLEI = {"13C": "nmr13c", "1H": "nmr1h"}  # csp5 nucleus -> modality name
# csp5's reasons for molecules it could not embed (no conformer: no nucleus can be predicted)
EMBED_FAILURES = {"parse", "skip_heavy", "embed_exc", "stall_timeout"}


@dataclass(frozen=True)
class NmrPrediction:
    shifts: np.ndarray  # float32 (n_atoms,) predicted shifts in ppm, in atom order
    atoms: np.ndarray  # int32 (n_atoms,) atom indices (in csp5's explicit-H molecule)
    spectrum: np.ndarray  # float32 (n_bins,)
    out_of_range: int  # shifts that fell outside the bins (dropped)


@dataclass(frozen=True)
class Reject:
    reason: str


Outcome = Union[NmrPrediction, Reject]


def default_specs(h1_bins: int = 1200, h1_low: float = 0.0, h1_high: float = 12.0) -> dict[str, BinSpec]:
    return {"13C": nmr13c_spec(), "1H": nmr1h_spec(h1_bins, h1_low, h1_high)}


def _failure_reasons(failures: Sequence[str]) -> dict[str, str]:
    """csp5 reports failures as 'reason\\tsmiles': the first reason per SMILES."""
    out: dict[str, str] = {}
    for line in failures:
        reason, _, smi = str(line).partition("\t")
        out.setdefault(smi, reason or "unknown")
    return out


def _align(inputs: Sequence[str], produced: Sequence[str]) -> list[Optional[int]]:
    """Position in `produced` of each input: csp5 keeps input order and drops failures, so an in-order
    walk pairs them even when the same SMILES appears twice."""
    pos: list[Optional[int]] = [None] * len(inputs)
    j = 0
    for i, smi in enumerate(inputs):
        if j < len(produced) and produced[j] == smi:
            pos[i] = j
            j += 1
    if j != len(produced):
        raise RuntimeError(f"csp5 returned {len(produced)} molecules that do not follow the input order")
    return pos


def _per_molecule(result: Any, n_records: int) -> list[Optional[tuple[np.ndarray, np.ndarray]]]:
    """(atom indices, shifts) per molecule record of a csp5 PredictionResult (None: no prediction)."""
    out: list[Optional[tuple[np.ndarray, np.ndarray]]] = [None] * n_records
    df = result.predictions
    if df is None or len(df) == 0:
        return out
    df = df.sort_values(["molecule_id", "atom_index"], kind="stable")
    ids = df["molecule_id"].to_numpy(np.int64)
    atoms = df["atom_index"].to_numpy(np.int64)
    shifts = df["shift_ppm"].to_numpy(np.float64)
    bounds = np.flatnonzero(np.diff(ids)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
        out[int(ids[a])] = (atoms[a:b].astype(np.int32), shifts[a:b].astype(np.float32))
    return out


def _outcomes(
    inputs: Sequence[str], result: Any, spec: BinSpec, fallback: dict[str, str]
) -> tuple[list[Outcome], list[Any]]:
    """Per input: its prediction or reject; and the embedded Mol per input (None where it failed)."""
    records = list(result.molecule_records)
    per_record = _per_molecule(result, max([r.molecule_id for r in records], default=-1) + 1)
    reasons = {**fallback, **_failure_reasons(result.failures)}
    pos = _align(inputs, [r.smiles for r in records])
    outcomes: list[Outcome] = []
    mols: list[Any] = []
    for smi, p in zip(inputs, pos):
        pred = per_record[records[p].molecule_id] if p is not None else None
        if pred is None:
            outcomes.append(Reject(reasons.get(smi, "csp5: no prediction")))
            mols.append(records[p].mol if p is not None else None)
            continue
        atoms, shifts = pred
        binned = bin_peaks(shifts, None, spec)
        outcomes.append(NmrPrediction(shifts, atoms, binned.spectrum, binned.n_out_of_range))
        mols.append(records[p].mol)
    return outcomes, mols


def predict_nmr(
    smiles: Sequence[str],
    nuclei: Sequence[str] = ("13C", "1H"),
    specs: Optional[dict[str, BinSpec]] = None,
    *,
    batch_size: int = 32,
    max_heavy_atoms: int = 0,
    seed: Optional[int] = None,
    device: str = "cpu",
) -> dict[str, list[Outcome]]:
    """Predicted shifts and binned spectra for each SMILES, per nucleus (lists aligned with `smiles`).

    `max_heavy_atoms` > 0 rejects bigger molecules before embedding (`skip_heavy`); `seed` None uses csp5's
    per-molecule geometry seed (deterministic)."""
    import csp5
    from rdkit import RDLogger

    unknown = [n for n in nuclei if n not in NUCLEI]
    if unknown or not nuclei:
        raise ValueError(f"nuclei must be a non-empty subset of {sorted(NUCLEI)}, got {list(nuclei)}")
    specs = {**default_specs(), **(specs or {})}
    smiles = [str(s) for s in smiles]
    if not smiles:
        return {n: [] for n in nuclei}
    RDLogger.DisableLog("rdApp.*")
    first, *rest = list(nuclei)
    res = csp5.predict_smiles(
        smiles,
        nucleus=first,
        device=device,
        batch_size=batch_size,
        skip_heavy_atoms_gt=int(max_heavy_atoms),
        num_workers=1,
        random_seed=seed,
    )
    out: dict[str, list[Outcome]] = {}
    out[first], mols = _outcomes(smiles, res, specs[first], {})
    embed_failed = {
        smi: r for smi, r in _failure_reasons(res.failures).items() if r.split(":")[0] in EMBED_FAILURES
    }
    for nucleus in rest:
        results: list[Outcome] = [Reject(embed_failed.get(s, "csp5: no prediction")) for s in smiles]
        ready = [i for i, m in enumerate(mols) if m is not None]
        # No conformer kept by the first nucleus but embedding worked (e.g. no carbon for 13C): embed again.
        again = [i for i, m in enumerate(mols) if m is None and smiles[i] not in embed_failed]
        if ready:
            r = csp5.predict_mols(
                [mols[i] for i in ready],
                smiles=[smiles[i] for i in ready],
                nucleus=nucleus,
                device=device,
                batch_size=batch_size,
            )
            got, _ = _outcomes([smiles[i] for i in ready], r, specs[nucleus], {})
            for i, o in zip(ready, got):
                results[i] = o
        if again:
            sub = [smiles[i] for i in again]
            r = csp5.predict_smiles(
                sub, nucleus=nucleus, device=device, batch_size=batch_size, num_workers=1, random_seed=seed
            )
            got, _ = _outcomes(sub, r, specs[nucleus], {})
            for i, o in zip(again, got):
                results[i] = o
        out[nucleus] = results
    return out


def predict_nmr_isolated(smiles: Sequence[str], nuclei: Sequence[str] = ("13C", "1H"), **kwargs: Any):
    """`predict_nmr`, but an exception inside csp5 costs only the molecule that raised it: the batch is
    retried one molecule at a time and a molecule that still raises is a reject `csp5_error: <exception>`."""
    try:
        return predict_nmr(smiles, nuclei, **kwargs)
    except Exception:  # noqa: BLE001 - isolate the molecule below
        out: dict[str, list[Outcome]] = {n: [] for n in nuclei}
        for smi in smiles:
            try:
                one = predict_nmr([smi], nuclei, **kwargs)
            except Exception as exc:  # noqa: BLE001
                one = {n: [Reject(f"csp5_error: {type(exc).__name__}: {exc}"[:200])] for n in nuclei}
            for n in nuclei:
                out[n].extend(one[n])
        return out
