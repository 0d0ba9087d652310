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

from acml_dist.chem.parse import mol_from_smiles


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
    src, dst = np.nonzero(adj)  # row-major: already sorted by (source, target)
    e = len(src)
    if e != 2 * mol.GetNumBonds():  # zero-order bonds: not visible in the matrix
        return mol_to_graph_reference(mol)
    btype = _HALF_ORDER_TO_TYPE.take((adj[src, dst] * 2).astype(np.intp), mode="clip")  # 1, 1.5, 2, 3
    if not btype.all():  # another bond order: dative, quadruple, ...
        return mol_to_graph_reference(mol)
    # One map per feature over atom objects made once (GetAtoms()' sequence wrapper costs more).
    atoms = list(map(mol.GetAtomWithIdx, range(n)))
    z, num_h, hyb, ring = np.array(
        [
            list(map(_Atom.GetAtomicNum, atoms)),
            list(map(_Atom.GetTotalNumHs, atoms)),
            list(map(_HYB_VALUE.__getitem__, map(_Atom.GetHybridization, atoms))),
            list(map(_Atom.IsInRing, atoms)),
        ],
        dtype=np.intp,
    ).reshape(4, n)
    aromatic = btype == 12
    ogb_x = np.zeros((n, 9), dtype=np.uint8)
    hu_x = np.zeros((n, 2), dtype=np.uint8)
    ogb_x[:, 0] = hu_x[:, 0] = _ATOMIC.take(z, mode="clip")
    ogb_x[:, 2] = _DEGREE.take(np.bincount(src, minlength=n), mode="clip")
    ogb_x[:, 3] = 5  # formal charge 0
    ogb_x[:, 4] = _NUM_H.take(num_h, mode="clip")
    ogb_x[:, 6] = _OGB_HYB[hyb]
    # A sanitised atom is aromatic exactly when one of its bonds is (aromatic rings flag atoms and bonds).
    ogb_x[src[aromatic], 7] = 1
    ogb_x[:, 8] = ring
    if "@" in hint:
        chiral = np.array([a.GetChiralTag().real for a in atoms], dtype=np.intp)
        ogb_x[:, 1], hu_x[:, 1] = _OGB_CHIRAL[chiral], _HU_CHIRAL[chiral]
    # Not a text check: sanitisation charges some neutral-looking input (nitro N(=O)=O, perchlorate).
    if mol.HasSubstructMatch(_CHARGED):
        charge = np.array([a.GetFormalCharge() for a in atoms], dtype=np.int64)
        ogb_x[:, 3] = np.where(np.abs(charge) <= 5, charge + 5, 11)
    if "[" in hint:
        ogb_x[:, 5] = _RADICAL[np.minimum([a.GetNumRadicalElectrons() for a in atoms], 255)]
    hu_edge_attr = np.zeros((e, 2), dtype=np.uint8)
    ogb_edge_attr = np.zeros((e, 3), dtype=np.uint8)
    hu_edge_attr[:, 0] = _BT_HU[btype]
    ogb_edge_attr[:, 0] = _BT_OGB[btype]
    # Aromatic bonds are conjugated; a bond with an sp3 end is not; ask RDKit about the rest. Per-pair
    # values go through an n x n matrix, which also gives each reverse edge its value.
    ask = np.flatnonzero(~aromatic & (hyb[src] != _SP3) & (hyb[dst] != _SP3) & (src < dst))
    if len(ask):
        pairs = np.zeros((n, n), dtype=np.uint8)
        i, j = src[ask], dst[ask]
        pairs[i, j] = pairs[j, i] = [
            mol.GetBondBetweenAtoms(int(a), int(b)).GetIsConjugated() for a, b in zip(i, j)
        ]
        ogb_edge_attr[:, 2] = pairs[src, dst] | aromatic
    else:
        ogb_edge_attr[:, 2] = aromatic
    if "/" in hint or "\\" in hint:
        bonds = list(map(mol.GetBondWithIdx, range(mol.GetNumBonds())))
        i = list(map(Chem.Bond.GetBeginAtomIdx, bonds))
        j = list(map(Chem.Bond.GetEndAtomIdx, bonds))
        stereo, bdir = np.zeros((n, n), dtype=np.uint8), np.zeros((n, n), dtype=np.uint8)
        stereo[i, j] = stereo[j, i] = _OGB_STEREO[[b.GetStereo().real for b in bonds]]
        bdir[i, j] = bdir[j, i] = _HU_DIR[[b.GetBondDir().real for b in bonds]]
        ogb_edge_attr[:, 1], hu_edge_attr[:, 1] = stereo[src, dst], bdir[src, dst]
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
_Atom = Chem.Atom
_HYB_VALUE = {
    h: int(h) for h in Chem.HybridizationType.values.values()
}  # enum object -> int, no attribute look-up


def smiles_to_graph(smiles: str) -> Optional[dict[str, np.ndarray]]:
    """Parse + featurise (what the benchmark times against a bare parse); None for invalid SMILES."""
    try:
        mol = mol_from_smiles(smiles)
    except ValueError:
        return None
    return None if mol is None else mol_to_graph(mol, smiles)
