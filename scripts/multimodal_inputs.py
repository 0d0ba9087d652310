"""Inputs of the multimodal run (scripts/multimodal.sh) for a featurised dataset:

- `<out>/nmr_keys.txt`: a random `--nmr` fraction of the molecules (every split), for `acml nmr-predict
  keys_file=...` (csp5-predicted 13C and 1H);
- `<out>/ms.mgf`: a random `--ms` fraction as an MGF library read by `acml import-spectra`. No measured mass
  spectrum ships offline, so each record is a crude in-silico EI-like spectrum: the molecular ion plus the
  nominal masses of both fragments of every acyclic single bond cut (RDKit), intensity by fragment size. It
  is a deterministic function of the structure, not a real spectrum: it exercises the MS path end to end;
- `<out>/image_keys.txt`: a random `--images` fraction, for `acml depict keys_file=...`.

    python scripts/multimodal_inputs.py shards/mm_small runs/mm_small --nmr 0.15 --ms 0.1 --images 0 --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def fragment_peaks(smiles: str) -> list[tuple[float, float]]:
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    mol = Chem.MolFromSmiles(smiles)
    peaks: dict[int, float] = {round(Descriptors.MolWt(mol)): 0.3}
    for bond in mol.GetBonds():
        if bond.IsInRing() or bond.GetBondType() != Chem.BondType.SINGLE:
            continue
        pieces = Chem.GetMolFrags(Chem.FragmentOnBonds(mol, [bond.GetIdx()], addDummies=False), asMols=True)
        for frag in pieces:
            mz = round(Descriptors.MolWt(frag))
            peaks[mz] = max(peaks.get(mz, 0.0), frag.GetNumHeavyAtoms() / mol.GetNumHeavyAtoms())
    return sorted((float(m), i) for m, i in peaks.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("out")
    ap.add_argument("--nmr", type=float, default=0.15)
    ap.add_argument("--ms", type=float, default=0.1)
    ap.add_argument("--images", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from acml_dist.data.modalities import iter_dataset_molecules

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mols = list(iter_dataset_molecules(args.shards, ("train", "val", "test")))
    rng = np.random.default_rng(args.seed)
    nmr = [m["key"] for m in mols if rng.random() < args.nmr]
    (out / "nmr_keys.txt").write_text("\n".join(nmr) + "\n")
    lines = []
    for m in (m for m in mols if rng.random() < args.ms):
        lines += ["BEGIN IONS", f"TITLE={m['key']}", f"SMILES={m['smiles']}", "MSLEVEL=1"]
        lines += [f"{mz:.1f} {i:.3f}" for mz, i in fragment_peaks(m["smiles"])]
        lines += ["END IONS", ""]
    (out / "ms.mgf").write_text("\n".join(lines))
    images = [m["key"] for m in mols if rng.random() < args.images]  # drawn last: earlier draws unchanged
    (out / "image_keys.txt").write_text("".join(k + "\n" for k in images))
    print(
        f"{len(mols)} molecules: {len(nmr)} NMR keys, {lines.count('BEGIN IONS')} MS records, "
        f"{len(images)} image keys -> {out}"
    )


if __name__ == "__main__":
    main()
