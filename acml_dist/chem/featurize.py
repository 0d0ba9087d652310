"""Molecular graphs as integer arrays in both schemas of DESIGN.md section 2 (Hu et al. and OGB).

`mol_to_graph` is the fast path: one adjacency-matrix call gives edges, bond types and degrees, ring info
gives ring membership, and per-atom look-ups are limited to the four features no bulk call provides.
Features that the input SMILES text rules out (no '@': no chirality, no '[': no
radicals, no '/' or '\\': no bond stereo or direction) are not looked up at all. Anything unusual falls
back to `mol_to_graph_reference`, the one-call-per-feature version that the tests compare against.
Edges are stored in both directions, sorted by (source, target)."""

from __future__ import annotations

from typing import Optional

import numpy as np
from rdkit import Chem


# RDKit enum value -> schema index (see ogb.utils.features and pretrain-gnns loader.py), as lookup tables.
def _table(values: list[int], fill: int, size: int = 256) -> np.ndarray:
    return np.array(values + [fill] * (size - len(values)), dtype=np.uint8)


_OGB_CHIRAL = _table([0, 1, 2, 3], 4)
_HU_CHIRAL = _table([0, 1, 2], 0)
# HybridizationType: UNSPECIFIED, S, SP, SP2, SP3, SP2D, SP3D, SP3D2, OTHER -> SP,SP2,SP3,SP3D,SP3D2,misc
_OGB_HYB = _table([5, 5, 0, 1, 2, 5, 3, 4, 5], 5)
# BondStereo: NONE, ANY, Z, E, CIS, TRANS, ATROPCW, ATROPCCW -> NONE,Z,E,CIS,TRANS,ANY
_OGB_STEREO = _table([0, 5, 1, 2, 3, 4, 5, 5], 5)
# BondDir: NONE, BEGINWEDGE, BEGINDASH, ENDDOWNRIGHT, ENDUPRIGHT, ... -> NONE, ENDUPRIGHT, ENDDOWNRIGHT
_HU_DIR = _table([0, 0, 0, 2, 1], 0)
# BondType: SINGLE=1, DOUBLE=2, TRIPLE=3, AROMATIC=12 -> 0..3; others: Hu 0 (single), OGB 4 (misc)
_BT_HU = _table([0, 0, 1, 2] + [0] * 8 + [3], 0)
_BT_OGB = _table([4, 0, 1, 2] + [4] * 8 + [3], 4)
# Atomic number 1..118 -> 0..117; dummy (0) and anything beyond -> 118 (OGB 'misc')
_ATOMIC = _table([118] + list(range(118)), 118)
_DEGREE = _table(list(range(11)), 11)
_NUM_H = _table(list(range(9)), 9)
_RADICAL = _table(list(range(5)), 5)
_ATOMIC_PY, _NUM_H_PY = _ATOMIC.tolist(), _NUM_H.tolist()  # per-atom Python look-ups
_SP3 = int(Chem.HybridizationType.SP3)
_CHARGED = Chem.MolFromSmarts("[!+0]")

GRAPH_KEYS = ("edge_index", "hu_x", "hu_edge_attr", "ogb_x", "ogb_edge_attr")


def _pack(z, chiral, degree, charge, num_h, radical, hyb, arom, ring, src, dst, btype, stereo, conj, bdir):
    """Schema-index arrays from raw RDKit values (int arrays; atoms then directed edges)."""
    n, e = len(z), len(src)
    ogb_x = np.empty((n, 9), dtype=np.uint8)
    ogb_x[:, 0] = _ATOMIC[np.minimum(z, 255)]
    ogb_x[:, 1] = _OGB_CHIRAL[chiral]
    ogb_x[:, 2] = _DEGREE[np.minimum(degree, 255)]
    ogb_x[:, 3] = np.where(np.abs(charge) <= 5, charge + 5, 11)
    ogb_x[:, 4] = _NUM_H[np.minimum(num_h, 255)]
    ogb_x[:, 5] = _RADICAL[np.minimum(radical, 255)]
    ogb_x[:, 6] = _OGB_HYB[hyb]
    ogb_x[:, 7] = arom
    ogb_x[:, 8] = ring
    hu_x = np.empty((n, 2), dtype=np.uint8)
    hu_x[:, 0] = ogb_x[:, 0]
    hu_x[:, 1] = _HU_CHIRAL[chiral]
    edge_index = np.empty((2, e), dtype=np.int32)
    edge_index[0], edge_index[1] = src, dst
    hu_edge_attr = np.empty((e, 2), dtype=np.uint8)
    hu_edge_attr[:, 0] = _BT_HU[btype]
    hu_edge_attr[:, 1] = _HU_DIR[bdir]
    ogb_edge_attr = np.empty((e, 3), dtype=np.uint8)
    ogb_edge_attr[:, 0] = _BT_OGB[btype]
    ogb_edge_attr[:, 1] = _OGB_STEREO[stereo]
    ogb_edge_attr[:, 2] = conj
    return {
        "edge_index": edge_index,
        "hu_x": hu_x,
        "hu_edge_attr": hu_edge_attr,
        "ogb_x": ogb_x,
        "ogb_edge_attr": ogb_edge_attr,
    }


def mol_to_graph_reference(mol: Chem.Mol) -> dict[str, np.ndarray]:
    """Straightforward featurisation, one RDKit call per feature per atom/bond (the ground truth)."""
    atoms = [
        (
            a.GetAtomicNum(),
            int(a.GetChiralTag()),
            a.GetDegree(),
            a.GetFormalCharge(),
            a.GetTotalNumHs(),
            a.GetNumRadicalElectrons(),
            int(a.GetHybridization()),
            int(a.GetIsAromatic()),
            int(a.IsInRing()),
        )
        for a in mol.GetAtoms()
    ]
    cols = np.array(atoms, dtype=np.int64).reshape(-1, 9).T
    edges = []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        feats = (int(b.GetBondType()), int(b.GetStereo()), int(b.GetIsConjugated()), int(b.GetBondDir()))
        edges += [(i, j, *feats), (j, i, *feats)]
    e = np.array(sorted(edges), dtype=np.int64).reshape(-1, 6).T
    return _pack(*cols, *e)


def mol_to_graph(mol: Chem.Mol, hint: Optional[str] = None) -> dict[str, np.ndarray]:
    """Graph arrays of a sanitised Mol. `hint`: the SMILES the Mol was parsed from, unchanged since (it
    lets the text rule features out); None (SDF input, standardised Mol) takes the reference path.
    Writes the schema indices straight into the output arrays: on ~20-atom molecules every numpy call
    costs about as much as an RDKit look-up."""
    if hint is None or "->" in hint or "<-" in hint or "*" in hint:
        return mol_to_graph_reference(mol)
    n = mol.GetNumAtoms()
    adj = Chem.GetAdjacencyMatrix(mol, useBO=True)
    src, dst = np.nonzero(adj)
    if len(src) != 2 * mol.GetNumBonds():  # zero-order bonds: not visible in the matrix
        return mol_to_graph_reference(mol)
    btype = _HALF_ORDER_TO_TYPE[np.minimum((adj[src, dst] * 2).astype(np.intp), 7)]  # 1, 1.5, 2, 3
    if not btype.all():  # another bond order: dative, quadruple, ...
        return mol_to_graph_reference(mol)
    # GetAtomWithIdx, not GetAtoms(): RDKit's Python-level sequence wrapper costs more than the look-ups.
    atoms = list(map(mol.GetAtomWithIdx, range(n)))
    rows = [
        (
            _ATOMIC_PY[min(a.GetAtomicNum(), 255)],
            _NUM_H_PY[min(a.GetTotalNumHs(), 255)],
            a.GetHybridization().real,
            a.GetIsAromatic(),
        )
        for a in atoms
    ]
    cols = np.array(rows, dtype=np.int64).reshape(n, 4)
    hyb = cols[:, 2]
    ogb_x = np.zeros((n, 9), dtype=np.uint8)
    hu_x = np.zeros((n, 2), dtype=np.uint8)
    ogb_x[:, 0] = hu_x[:, 0] = cols[:, 0]
    ogb_x[:, 2] = _DEGREE[np.minimum(np.count_nonzero(adj, axis=1), 255)]
    ogb_x[:, 3] = 5  # formal charge 0
    ogb_x[:, 4] = cols[:, 1]
    ogb_x[:, 6] = _OGB_HYB[hyb]
    ogb_x[:, 7] = cols[:, 3]
    ogb_x[[i for ring in mol.GetRingInfo().AtomRings() for i in ring], 8] = 1
    if "@" in hint:
        chiral = np.array([a.GetChiralTag().real for a in atoms], dtype=np.intp)
        ogb_x[:, 1], hu_x[:, 1] = _OGB_CHIRAL[chiral], _HU_CHIRAL[chiral]
    # Not a text check: sanitisation charges some neutral-looking input (nitro N(=O)=O, perchlorate).
    if mol.HasSubstructMatch(_CHARGED):
        charge = np.array([a.GetFormalCharge() for a in atoms], dtype=np.int64)
        ogb_x[:, 3] = np.where(np.abs(charge) <= 5, charge + 5, 11)
    if "[" in hint:
        ogb_x[:, 5] = _RADICAL[np.minimum([a.GetNumRadicalElectrons() for a in atoms], 255)]
    e = len(src)
    hu_edge_attr = np.zeros((e, 2), dtype=np.uint8)
    ogb_edge_attr = np.zeros((e, 3), dtype=np.uint8)
    hu_edge_attr[:, 0] = _BT_HU[btype]
    ogb_edge_attr[:, 0] = _BT_OGB[btype]
    # Aromatic bonds are conjugated; a bond with an sp3 end is not; ask RDKit about the rest.
    aromatic = btype == 12
    conj = aromatic.astype(np.uint8)
    ask = np.flatnonzero(~aromatic & (hyb[src] != _SP3) & (hyb[dst] != _SP3) & (src < dst))
    if len(ask):
        flags = [mol.GetBondBetweenAtoms(int(src[k]), int(dst[k])).GetIsConjugated() for k in ask]
        _set_pairs(conj, src, dst, ask, np.array(flags, dtype=np.uint8))
    ogb_edge_attr[:, 2] = conj
    if "/" in hint or "\\" in hint:
        bonds = list(map(mol.GetBondWithIdx, range(mol.GetNumBonds())))
        ends = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in bonds], dtype=np.int64).reshape(
            -1, 2
        )
        fwd = _edge_pos(src, dst, n, ends[:, 0], ends[:, 1])
        rev = _edge_pos(src, dst, n, ends[:, 1], ends[:, 0])
        stereo = _OGB_STEREO[[b.GetStereo().real for b in bonds]]
        bdir = _HU_DIR[[b.GetBondDir().real for b in bonds]]
        ogb_edge_attr[fwd, 1] = ogb_edge_attr[rev, 1] = stereo
        hu_edge_attr[fwd, 1] = hu_edge_attr[rev, 1] = bdir
    edge_index = np.array([src, dst], dtype=np.int32).reshape(2, e)
    return {
        "edge_index": edge_index,
        "hu_x": hu_x,
        "hu_edge_attr": hu_edge_attr,
        "ogb_x": ogb_x,
        "ogb_edge_attr": ogb_edge_attr,
    }


# 2 x bond order (1, 1.5, 2, 3) -> RDKit BondType value (SINGLE 1, AROMATIC 12, DOUBLE 2, TRIPLE 3); 0: other
_HALF_ORDER_TO_TYPE = np.array([0, 0, 1, 12, 2, 0, 3, 0], dtype=np.int64)


def _edge_pos(src: np.ndarray, dst: np.ndarray, n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Positions of edges (i, j) in the (src, dst)-sorted edge list."""
    return np.searchsorted(src * n + dst, i * n + j)


def _set_pairs(values: np.ndarray, src: np.ndarray, dst: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    """Set `v` on edges `k` and on their reverse edges."""
    n = int(max(src.max(), dst.max())) + 1
    values[k] = v
    values[_edge_pos(src, dst, n, dst[k], src[k])] = v


def smiles_to_graph(smiles: str) -> Optional[dict[str, np.ndarray]]:
    """Parse + featurise (what the benchmark times against a bare parse); None for invalid SMILES."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else mol_to_graph(mol, smiles)
