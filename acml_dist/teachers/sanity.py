"""Does a teacher know chemistry? Mean Tanimoto of each molecule's k nearest neighbours in the teacher's
embedding space (cosine) against random pairs, on molecules of an embedded dataset.

    python -m acml_dist.teachers.sanity shards=<dataset dir> teacher=<name> [split=train] [n=5000] [k=5]

A teacher that ignores chemistry puts random molecules next to each other: its kNN Tanimoto equals the
random-pair Tanimoto (ratio ~1). Tanimoto is on Morgan r=2 2048-bit fingerprints, independent of the teacher.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.data.loader import iter_samples
from acml_dist.errors import DataError


def load_cached(root: str | Path, teacher: str, split: str, n: int) -> tuple[list[str], np.ndarray]:
    """Up to n (smiles, embedding) pairs of `split`, in shard order, from the teacher's cache."""
    smiles: list[str] = []
    embs: list[np.ndarray] = []
    for sample in iter_samples(Path(root), split, [teacher]):
        emb = sample["embeddings"][teacher]
        if emb is not None:
            smiles.append(sample["smiles"])
            embs.append(emb)
        if len(smiles) >= n:
            return smiles, np.stack(embs)
    if not smiles:
        raise DataError(f"no cached embeddings for teacher {teacher!r} in split {split!r} under {root}")
    return smiles, np.stack(embs)


def knn_tanimoto(smiles: list[str], embs: np.ndarray, k: int = 5, seed: int = 0) -> dict[str, Any]:
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator
    from sklearn.neighbors import NearestNeighbors

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(embs)
    _, idx = nn.kneighbors(embs)
    knn = []
    for i, row in enumerate(idx):
        neigh = [int(j) for j in row if j != i][:k]
        knn.extend(DataStructs.BulkTanimotoSimilarity(fps[i], [fps[j] for j in neigh]))
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(fps), size=len(fps) * k)
    b = (a + rng.integers(1, len(fps), size=a.size)) % len(fps)  # never a molecule with itself
    rand = [DataStructs.TanimotoSimilarity(fps[i], fps[j]) for i, j in zip(a, b)]
    knn_mean, rand_mean = float(np.mean(knn)), float(np.mean(rand))
    return {
        "molecules": len(smiles),
        "k": k,
        "knn_tanimoto": round(knn_mean, 4),
        "random_tanimoto": round(rand_mean, 4),
        "ratio": round(knn_mean / rand_mean, 2) if rand_mean > 0 else float("inf"),
    }


def teacher_sanity(root: str | Path, teacher: str, split: str = "train", n: int = 5000, k: int = 5) -> dict:
    smiles, embs = load_cached(Path(root), teacher, split, n)
    return {"teacher": teacher, "split": split, **knn_tanimoto(smiles, embs, k=k)}


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    if "shards" not in args or "teacher" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    r = teacher_sanity(
        args["shards"],
        args["teacher"],
        args.get("split", "train"),
        int(args.get("n", 5000)),
        int(args.get("k", 5)),
    )
    print(
        f"teacher {r['teacher']} ({r['molecules']} {r['split']} molecules): mean Tanimoto of "
        f"{r['k']} nearest neighbours in embedding space {r['knn_tanimoto']:.3f} "
        f"vs random pairs {r['random_tanimoto']:.3f} "
        f"(x{r['ratio']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
