"""The Ray task bodies of featurisation (`featurize.featurize_corpus` wraps them in `ray.remote`): per chunk
standardise, filter, exclude, featurise, encode; then dedupe, keep and assemble shards.

A chunk's accepted molecules go to `<work>/chunks/c<i>.rows.npz` (packed rows, `acml_dist.data.packed`,
so shards are assembled by gathering rows) with an index `c<i>.npz` (seq, split); its dedupe keys go to one
file per hash partition `<work>/keys/p<p>/c<i>.npy`; its rejects to `c<i>.rejects.jsonl`; `c<i>.done.json`
last."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.data.packed import Packed, concat, from_arrays
from acml_dist.data.shards import SPLITS, atomic_write, decode_npz, encode_graph_shard, encode_npz

KEY_DTYPE = np.dtype([("digest", "S16"), ("seq", "<i8")])
GRAPH_BATCH = 1024  # molecules featurised together (bounded memory, numpy calls amortised)


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def stereo_draw(seed: int, inchikey: str) -> int:
    """The random draw that picks a molecule's stereoisomers where there are more than asked: fixed by the
    molecule, so it gets the same isomers wherever it sits in the input."""
    return int.from_bytes(digest(f"{seed}:{inchikey}")[:4], "big")


def assign_split(group: str, seed: int, fractions: list[float]) -> int:
    """Split index from a stable hash of the group (scaffold, or the molecule key for random splits)."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest(), "big")
    u = h / 2**64
    total = float(sum(fractions))
    acc = 0.0
    for i, f in enumerate(fractions):
        acc += f / total
        if u < acc:
            return i
    return len(fractions) - 1


# ~105 lines on purpose: one pass over the records whose batch flush (`write_accepted`) shares its lists;
# split apart, the state would travel through a class for no reader's gain.
def process_chunk(
    index: int,
    seq0: int,
    records: list[tuple[str, str, str]],
    data: dict[str, Any],
    excluded: frozenset[str] | set[str],
    work: str,
    parts: int,
) -> dict[str, Any]:
    """Featurise one chunk of records; returns its counts (also saved in `c<i>.done.json`)."""
    from acml_dist.chem.featurize import mols_to_graphs
    from acml_dist.chem.standardize import Reject, standardize, stereoisomers
    from acml_dist.data.sources import sanitize_key

    wdir = Path(work)
    std_cfg = _Obj(data.get("standardize") or {})
    by_smiles = data.get("dedupe_by", "inchikey") == "smiles"
    random_split = data.get("split", "scaffold") == "random"
    seed, fractions = int(data.get("seed", 0)), list(data.get("split_fractions", [0.8, 0.1, 0.1]))
    source = str(data.get("source", "file"))
    # Stereoisomers written beside each molecule with unassigned stereo; their seqs follow the parent's.
    stereo = int(data.get("stereoisomers") or 0)
    stride = stereo + 1
    rejects: list[str] = []
    reasons: dict[str, int] = {}
    graphs: list[dict] = []
    columns: dict[str, list] = {"key": [], "smiles.txt": [], "meta.json": []}
    if data.get("images"):
        columns["image.png"] = []
    seqs, splits, digests = [], [], []
    excluded_n = added = 0
    accepted: list = []  # (seq, id, shown input, StandardResult, split group, parent), up to GRAPH_BATCH

    def write_accepted() -> None:
        """Graphs of the accepted batch in one call (numpy work once per batch), then the tar members."""
        batch = mols_to_graphs([a[3].mol for a in accepted], [a[3].hint for a in accepted])
        for (seq, rid, shown, res, group, parent), graph in zip(accepted, batch):
            meta = {
                "inchikey": res.inchikey,
                "formula": res.formula,
                "heavy_atoms": res.heavy_atoms,
                "scaffold": res.scaffold,
                "source": source,
                "source_id": rid,
                "input": shown,
                **({"stereo_parent": parent} if parent else {}),
            }
            graphs.append(graph)
            columns["key"].append(sanitize_key(rid).encode())
            columns["smiles.txt"].append(res.smiles.encode())
            columns["meta.json"].append(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
            if "image.png" in columns:  # imported here: RDKit's drawing needs X libraries a node may lack
                from acml_dist.chem.depict import depict_png

                columns["image.png"].append(depict_png(res.mol))
            seqs.append(seq)
            splits.append(assign_split(group, seed, fractions))
            digests.append(digest(res.smiles if by_smiles else res.inchikey))
        accepted.clear()

    for j, (rid, text, fmt) in enumerate(records):
        res = standardize(text, std_cfg, "smiles" if fmt == "smiles" else "molblock")
        shown = text if fmt == "smiles" else text.split("\n", 1)[0]
        if isinstance(res, Reject):
            rejects.append(json.dumps({"source": source, "id": rid, "input": shown, "reason": res.reason}))
            reason = res.reason.split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        elif res.inchikey in excluded:
            excluded_n += 1
        else:
            # A molecule's stereoisomers share its split group: none lands in another split than its parent.
            group = (res.smiles if by_smiles else res.inchikey) if random_split else res.scaffold
            accepted.append(((seq0 + j) * stride, rid, shown, res, group, None))
            isomers = stereoisomers(res, stereo, stereo_draw(seed, res.inchikey)) if stereo else []
            for k, isomer in enumerate(isomers, 1):
                added += 1
                if isomer.inchikey in excluded:
                    excluded_n += 1
                else:
                    seq = (seq0 + j) * stride + k
                    accepted.append((seq, f"{rid}-stereo{k}", shown, isomer, group, res.inchikey))
            if len(accepted) >= GRAPH_BATCH:
                write_accepted()
    if accepted:
        write_accepted()
    cdir = wdir / "chunks"
    atomic_write(cdir / f"c{index:06d}.rows.npz", encode_graph_shard(Packed.from_graphs(graphs, columns)))
    index_buf = encode_npz({"seq": np.array(seqs, np.int64), "split": np.array(splits, np.uint8)})
    atomic_write(cdir / f"c{index:06d}.npz", index_buf)
    atomic_write(cdir / f"c{index:06d}.rejects.jsonl", "".join(r + "\n" for r in rejects).encode())
    keys = np.empty(len(seqs), dtype=KEY_DTYPE)
    keys["digest"] = digests
    keys["seq"] = seqs
    part = np.array([int.from_bytes(d[:4], "big") % parts for d in digests], dtype=np.int64)
    for p in range(parts):
        atomic_write(wdir / "keys" / f"p{p:04d}" / f"c{index:06d}.npy", _npy_bytes(keys[part == p]))
    counts = {
        "index": index,
        "read": len(records),
        "accepted": len(seqs),
        "rejected": len(rejects),
        "excluded": excluded_n,
        "stereoisomers": added,
        "reasons": reasons,
    }
    atomic_write(cdir / f"c{index:06d}.done.json", json.dumps(counts, sort_keys=True).encode())
    return counts


def dedupe_partition(work: str, p: int) -> int:
    """Duplicates in one hash partition: every seq whose key appeared earlier in input order."""
    files = sorted((Path(work) / "keys" / f"p{p:04d}").glob("c*.npy"))
    arrays = [np.load(f, allow_pickle=False) for f in files]
    keys = np.concatenate(arrays) if arrays else np.empty(0, dtype=KEY_DTYPE)
    order = np.lexsort((keys["seq"], keys["digest"]))
    d = keys["digest"][order]
    repeat = np.zeros(len(d), dtype=bool)
    repeat[1:] = d[1:] == d[:-1]
    dups = np.sort(keys["seq"][order][repeat])
    atomic_write(Path(work) / "dups" / f"p{p:04d}.npy", _npy_bytes(dups))
    return int(len(dups))


def chunk_keep(work: str, index: int, parts: int) -> dict[str, int]:
    """Mark a chunk's duplicates; per-split counts of the molecules it contributes."""
    wdir = Path(work)
    with np.load(wdir / "chunks" / f"c{index:06d}.npz", allow_pickle=False) as idx:
        seq, split = idx["seq"], idx["split"]
    keep = np.ones(len(seq), dtype=bool)
    if len(seq):
        lo, hi = seq.min(), seq.max()
        for p in range(parts):
            dups = np.load(wdir / "dups" / f"p{p:04d}.npy", allow_pickle=False)
            dups = dups[np.searchsorted(dups, lo) : np.searchsorted(dups, hi, side="right")]
            keep &= ~np.isin(seq, dups)
    atomic_write(wdir / "chunks" / f"c{index:06d}.keep.npy", _npy_bytes(keep))
    return {s: int(((split == i) & keep).sum()) for i, s in enumerate(SPLITS)}


def assemble_shard(
    work: str, out_path: str, split: int, pieces: list[tuple[int, int, int]]
) -> dict[str, Any]:
    """Write one shard from rows of chunk files: pieces = (chunk, first, stop) over the chunk's kept
    molecules of `split`. Returns the manifest entry fields (samples, sha256)."""
    wdir = Path(work)
    parts: list[Packed] = []
    for chunk, first, stop in pieces:
        with np.load(wdir / "chunks" / f"c{chunk:06d}.npz", allow_pickle=False) as idx:
            sel = idx["split"] == split
        keep = np.load(wdir / "chunks" / f"c{chunk:06d}.keep.npy", allow_pickle=False)
        rows = np.flatnonzero(sel & keep)[first:stop]
        packed = from_arrays(decode_npz((wdir / "chunks" / f"c{chunk:06d}.rows.npz").read_bytes()))
        parts.append(packed.take(rows))
    shard = concat(parts)
    data = encode_graph_shard(shard)
    atomic_write(out_path, data)
    return {"samples": shard.n, "sha256": hashlib.sha256(data).hexdigest()}


class _Obj:
    """Attribute access over a plain dict (configs travel to Ray tasks as plain containers)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
