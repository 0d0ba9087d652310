"""Molecular graphs as integer arrays in both schemas of DESIGN.md section 2 (Hu et al. and OGB).

`mols_to_graphs` is the fast path (the featurisation stage calls it once per chunk; `mol_to_graph` is a
batch of one): one adjacency-matrix call per molecule gives edges, bond types, degrees and aromatic atoms;
per atom only atomic number, total H, hybridisation and ring membership are looked up; features that the
SMILES text rules out (no '@': no chirality, no '[': no radicals, no '/' or '\\': no bond stereo or
direction) are not looked up at all; every numpy step runs once over the batch. Anything unusual falls
back to `mol_to_graph_reference`, the one-call-per-feature version that the tests compare against: dative
bonds, dummy atoms, and every CXSMILES (a `|...|` extension sets radicals, cis/trans bonds, coordinate
bonds and more that the SMILES part of the text does not show).
Edges are stored in both directions, sorted by (source, target)."""

from __future__ import annotations

from collections.abc import Sequence
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
    lets the text rule features out); None (SDF input, standardised Mol) and CXSMILES take the reference
    path."""
    return mols_to_graphs([mol], [hint])[0]


def mols_to_graphs(mols: Sequence[Chem.Mol], hints: Sequence[Optional[str]]) -> list[dict[str, np.ndarray]]:
    """`mol_to_graph` of many molecules at once: RDKit is asked per molecule and per atom, and every numpy
    step (look-ups, degrees, conjugation, array building) runs once over the whole batch, because on
    ~20-atom molecules each numpy call costs about as much as an RDKit look-up."""
    out: list = [None] * len(mols)
    batch: list[int] = []  # molecules on the fast path, in order
    sizes: list[tuple[int, int]] = []  # (atoms, directed edges)
    src_l, dst_l, orders = [], [], []
    atom: dict[str, list[int]] = {k: [] for k in _ATOM_COLUMNS}  # per-atom raw RDKit values, batch-wide
    edge_extra: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # batch position -> (stereo, bond dir)
    for k, (mol, hint) in enumerate(zip(mols, hints)):
        if hint is None or "|" in hint or "->" in hint or "<-" in hint or "*" in hint:
            out[k] = mol_to_graph_reference(mol)
            continue
        n = mol.GetNumAtoms()
        if n > _DENSE_MAX_ATOMS:  # the n x n matrices below would grow quadratically (20,000 atoms: 3 GB)
            out[k] = mol_to_graph_reference(mol)
            continue
        adj = Chem.GetAdjacencyMatrix(mol, useBO=True)
        src, dst = np.nonzero(adj)  # row-major: sorted by (source, target)
        if len(src) != 2 * mol.GetNumBonds():  # zero-order bonds: not visible in the matrix
            out[k] = mol_to_graph_reference(mol)
            continue
        # One map per feature over atom objects made once (GetAtoms()' sequence wrapper costs more).
        atoms = list(map(mol.GetAtomWithIdx, range(n)))
        atom["z"] += map(_Atom.GetAtomicNum, atoms)
        atom["num_h"] += map(_Atom.GetTotalNumHs, atoms)
        atom["hyb"] += map(_HYB_VALUE.__getitem__, map(_Atom.GetHybridization, atoms))
        atom["ring"] += map(_Atom.IsInRing, atoms)
        # Features the text rules out are not looked up: no '@', no chirality; no '[', no radicals.
        atom["chiral"] += [a.GetChiralTag().real for a in atoms] if "@" in hint else [0] * n
        atom["radical"] += map(_Atom.GetNumRadicalElectrons, atoms) if "[" in hint else [0] * n
        # Not a text check: sanitisation charges some neutral-looking input (nitro N(=O)=O, perchlorate).
        charged = mol.HasSubstructMatch(_CHARGED)
        atom["charge"] += map(_Atom.GetFormalCharge, atoms) if charged else [0] * n
        if "/" in hint or "\\" in hint:
            edge_extra[len(batch)] = _bond_stereo(mol, n, src, dst)
        batch.append(k)
        sizes.append((n, len(src)))
        src_l.append(src)
        dst_l.append(dst)
        orders.append(adj[src, dst])
    if batch:
        graphs = _batch_arrays([mols[k] for k in batch], sizes, src_l, dst_l, orders, edge_extra, atom)
        for k, graph in zip(batch, graphs):
            out[k] = graph if graph is not None else mol_to_graph_reference(mols[k])
    return out


def _bond_stereo(mol: Chem.Mol, n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per directed edge: OGB bond stereo and Hu bond direction (via n x n matrices, both directions)."""
    bonds = list(map(mol.GetBondWithIdx, range(mol.GetNumBonds())))
    i = list(map(Chem.Bond.GetBeginAtomIdx, bonds))
    j = list(map(Chem.Bond.GetEndAtomIdx, bonds))
    stereo, bdir = np.zeros((n, n), dtype=np.uint8), np.zeros((n, n), dtype=np.uint8)
    stereo[i, j] = stereo[j, i] = _OGB_STEREO[[b.GetStereo().real for b in bonds]]
    bdir[i, j] = bdir[j, i] = _HU_DIR[[b.GetBondDir().real for b in bonds]]
    return stereo[src, dst], bdir[src, dst]


def _batch_arrays(mols, sizes, src_l, dst_l, orders, edge_extra, atom: dict[str, list[int]]):
    """Schema arrays for a batch of molecules, then one dict of views per molecule (None: a bond order
    the fast path does not know, e.g. dative or quadruple: the caller takes the reference path)."""
    n_atoms = np.array([a for a, _ in sizes], dtype=np.int64)
    n_edges = np.array([e for _, e in sizes], dtype=np.int64)
    atom_end, edge_end = np.cumsum(n_atoms), np.cumsum(n_edges)
    atom_start, edge_start = atom_end - n_atoms, edge_end - n_edges
    total = int(atom_end[-1])
    edge_mol = np.repeat(np.arange(len(sizes)), n_edges)
    src_local, dst_local = np.concatenate(src_l), np.concatenate(dst_l)
    src, dst = src_local + atom_start[edge_mol], dst_local + atom_start[edge_mol]  # batch-wide atom ids
    btype = _HALF_ORDER_TO_TYPE.take((np.concatenate(orders) * 2).astype(np.intp), mode="clip")
    unknown = set(edge_mol[btype == 0].tolist())  # 1, 1.5, 2, 3 are known; others: reference path
    cols = np.array([atom[k] for k in _ATOM_COLUMNS], dtype=np.int64).reshape(len(_ATOM_COLUMNS), total)
    z_, h_, hyb_, ring_, chiral_, charge_, radical_ = cols
    aromatic = btype == 12
    ogb_x = np.empty((total, 9), dtype=np.uint8)
    hu_x = np.empty((total, 2), dtype=np.uint8)
    ogb_x[:, 0] = hu_x[:, 0] = _ATOMIC.take(z_, mode="clip")
    ogb_x[:, 1], hu_x[:, 1] = _OGB_CHIRAL.take(chiral_, mode="clip"), _HU_CHIRAL.take(chiral_, mode="clip")
    ogb_x[:, 2] = _DEGREE.take(np.bincount(src, minlength=total), mode="clip")
    ogb_x[:, 3] = np.where(np.abs(charge_) <= 5, charge_ + 5, 11)
    ogb_x[:, 4] = _NUM_H.take(h_, mode="clip")
    ogb_x[:, 5] = _RADICAL.take(radical_, mode="clip")
    ogb_x[:, 6] = _OGB_HYB.take(hyb_, mode="clip")
    # A sanitised atom is aromatic exactly when one of its bonds is (aromatic rings flag atoms and bonds).
    ogb_x[:, 7] = 0
    ogb_x[src[aromatic], 7] = 1
    ogb_x[:, 8] = ring_
    hu_edge_attr = np.zeros((len(src), 2), dtype=np.uint8)
    ogb_edge_attr = np.zeros((len(src), 3), dtype=np.uint8)
    hu_edge_attr[:, 0] = _BT_HU.take(btype, mode="clip")
    ogb_edge_attr[:, 0] = _BT_OGB.take(btype, mode="clip")
    # Aromatic bonds are conjugated; a bond with an sp3 end is not; ask RDKit about the rest (each bond once,
    # from its lower atom), then copy every answer to the reverse edge, found by its (src, dst) key.
    not_sp3 = hyb_ != _SP3
    conj = aromatic.astype(np.uint8)
    ask = np.flatnonzero(~aromatic & not_sp3[src] & not_sp3[dst] & (src < dst))
    if len(ask):
        flags = [
            mols[m].GetBondBetweenAtoms(i, j).GetIsConjugated()
            for m, i, j in zip(edge_mol[ask].tolist(), src_local[ask].tolist(), dst_local[ask].tolist())
        ]
        key = src * total + dst  # ascending: molecules in order, each sorted by (source, target)
        conj[ask] = conj[np.searchsorted(key, dst[ask] * total + src[ask])] = flags
    ogb_edge_attr[:, 2] = conj
    for m, (stereo, bdir) in edge_extra.items():
        ogb_edge_attr[edge_start[m] : edge_end[m], 1] = stereo
        hu_edge_attr[edge_start[m] : edge_end[m], 1] = bdir
    edge_index = np.array([src_local, dst_local], dtype=np.int32).reshape(2, len(src))
    graphs: list = []
    for m, (a0, a1, e0, e1) in enumerate(
        zip(atom_start.tolist(), atom_end.tolist(), edge_start.tolist(), edge_end.tolist())
    ):
        graphs.append(
            None
            if m in unknown
            else {
                "edge_index": np.ascontiguousarray(edge_index[:, e0:e1]),
                "hu_x": hu_x[a0:a1],
                "hu_edge_attr": hu_edge_attr[e0:e1],
                "ogb_x": ogb_x[a0:a1],
                "ogb_edge_attr": ogb_edge_attr[e0:e1],
            }
        )
    return graphs


# 2 x bond order (1, 1.5, 2, 3) -> RDKit BondType value (SINGLE 1, AROMATIC 12, DOUBLE 2, TRIPLE 3); 0: other
_HALF_ORDER_TO_TYPE = np.array([0, 0, 1, 12, 2, 0, 3, 0], dtype=np.int64)
_Atom = Chem.Atom
# enum object -> int without an attribute look-up per atom
_HYB_VALUE = {h: int(h) for h in Chem.HybridizationType.values.values()}
_ATOM_COLUMNS = ("z", "num_h", "hyb", "ring", "chiral", "charge", "radical")
_DENSE_MAX_ATOMS = 1024


def smiles_to_graph(smiles: str) -> Optional[dict[str, np.ndarray]]:
    """Parse + featurise one SMILES; None when RDKit cannot parse or sanitise it."""
    return smiles_to_graphs([smiles])[0]


def smiles_to_graphs(smiles: Sequence[str]) -> list[Optional[dict[str, np.ndarray]]]:
    """`smiles_to_graph` of many SMILES, featurised as one batch (what the benchmark times)."""
    parsed = []
    for s in smiles:
        try:
            parsed.append(mol_from_smiles(s))
        except ValueError:
            parsed.append(None)
    valid = [i for i, m in enumerate(parsed) if m is not None]
    graphs = mols_to_graphs([parsed[i] for i in valid], [smiles[i] for i in valid])
    out: list[Optional[dict[str, np.ndarray]]] = [None] * len(smiles)
    for i, g in zip(valid, graphs):
        out[i] = g
    return out
