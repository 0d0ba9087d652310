"""Graph featurisation: the fast path equals the one-call-per-feature reference, schemas and layout."""

from __future__ import annotations

import gzip
from itertools import islice

import numpy as np
import pytest
from rdkit import Chem

from acml_dist.chem.featurize import (
    GRAPH_KEYS,
    mol_to_graph,
    mol_to_graph_reference,
    mols_to_graphs,
    smiles_to_graph,
    smiles_to_graphs,
)
from acml_dist.chem.parse import mol_from_smiles
from acml_dist.data.datasets import corpus_spec

pytestmark = pytest.mark.unit

TRICKY = [
    "C/C=C/C(=O)O",  # bond stereo and directions
    "F/C=C\\Cl",
    "C[C@H](N)C(=O)O",  # chirality
    "C[N+](C)(C)C.[Cl-]",  # charges
    "CN(=O)=O",  # sanitisation charges a neutral-looking nitro group
    "[CH3]",  # radical
    "[2H]C([2H])([2H])O",  # isotopes, explicit H atoms
    "c1ccc2[nH]ccc2c1",
    "C#N",
    "[Na+].[O-]c1ccccc1",
    "O=S(=O)(O)c1ccccc1",
    "C1CC1C=CC=CC#CC",
    "[Fe+2]",
    "N->[Pt]",  # dative bond: reference path
    "[H]C([H])([H])C=O",  # explicit hydrogen atoms, merged by MolFromSmiles
    "C1=CC=CC=C1",  # Kekule input perceived as aromatic
    "O=c1cccc[nH]1",
    "C=CC=CN(C)C",  # conjugation through a lone pair
    "CC=C=CC",  # allene: sp carbon between two double bonds
    "c1cc[n+]([O-])cc1",
    "Cl(=O)(=O)(=O)O",  # perchloric acid, charged by sanitisation
    "C/C=C/C=C\\C.[C@@H]1(O)CCCC1",  # stereo: the full MolFromSmiles route
    "CC(C)(C)c1ccc(cc1)C#CC(=O)N",
]


def _moses(n: int) -> list[str]:
    path = corpus_spec("moses_test").paths[0]
    with gzip.open(path, "rt") as fh:
        next(fh)
        return [line.strip() for line in islice(fh, n)]


def _nci(n: int) -> list[str]:
    path = corpus_spec("nci5k").paths[0]
    with open(path) as fh:
        return [line.split()[0] for line in islice(fh, n) if line.strip()]


@pytest.mark.parametrize("source", ["tricky", "moses", "nci"])
def test_fast_path_equals_reference(source: str) -> None:
    smiles = {"tricky": TRICKY, "moses": _moses(1500), "nci": _nci(1500)}[source]
    checked = 0
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        ref = mol_to_graph_reference(mol)
        # The fast featuriser on RDKit's Mol, and parse + featurise through our own parse route
        for fast in (mol_to_graph(mol, s), smiles_to_graph(s)):
            assert set(fast) == set(GRAPH_KEYS)
            for key in GRAPH_KEYS:
                assert fast[key].dtype == ref[key].dtype, (s, key)
                np.testing.assert_array_equal(fast[key], ref[key], err_msg=f"{s} {key}")
        checked += 1
    assert checked > 0.9 * len(smiles)


def test_layout_and_known_values() -> None:
    g = mol_to_graph(Chem.MolFromSmiles("C[C@H](N)C=O"), "C[C@H](N)C=O")
    assert g["edge_index"].dtype == np.int32 and g["edge_index"].shape == (2, 8)
    pairs = list(map(tuple, g["edge_index"].T))
    assert pairs == sorted(pairs) and all((j, i) in pairs for i, j in pairs)  # both directions, sorted
    assert g["hu_x"].shape == (5, 2) and g["ogb_x"].shape == (5, 9)
    assert g["hu_x"][:, 0].tolist() == [5, 5, 6, 5, 7]  # atomic number - 1
    assert g["hu_x"][1, 1] in (1, 2) and g["hu_x"][0, 1] == 0  # chiral centre
    double = [k for k, (i, j) in enumerate(pairs) if {i, j} == {3, 4}]
    assert [g["hu_edge_attr"][k, 0] for k in double] == [1, 1]  # double bond
    assert [g["ogb_edge_attr"][k, 0] for k in double] == [1, 1]
    benzene = mol_to_graph(Chem.MolFromSmiles("c1ccccc1"), "c1ccccc1")
    assert (benzene["hu_edge_attr"][:, 0] == 3).all() and (benzene["ogb_x"][:, 7] == 1).all()
    assert (benzene["ogb_x"][:, 8] == 1).all() and (benzene["ogb_edge_attr"][:, 2] == 1).all()


def test_ogb_ranges() -> None:
    dims = [119, 5, 12, 12, 10, 6, 6, 2, 2]
    for s in _nci(300):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        g = mol_to_graph(mol, s)
        assert (g["ogb_x"].max(axis=0) < np.array(dims)).all()
        if len(g["ogb_edge_attr"]):
            assert (g["ogb_edge_attr"].max(axis=0) < np.array([5, 6, 2])).all()
        assert g["hu_x"][:, 0].max() < 120 and g["hu_x"][:, 1].max() <= 2


@pytest.mark.parametrize("source", ["tricky", "moses", "nci"])
def test_parse_route_gives_molfromsmiles_molecule(source: str) -> None:
    """Skipping stereo perception for text without stereo marks changes no identifier."""
    smiles = {"tricky": TRICKY, "moses": _moses(1500), "nci": _nci(1500)}[source]
    for s in smiles:
        expected = Chem.MolFromSmiles(s)
        try:
            mol = mol_from_smiles(s)
        except ValueError:
            mol = None
        assert (mol is None) == (expected is None), s
        if mol is not None:
            assert Chem.MolToSmiles(mol) == Chem.MolToSmiles(expected), s
            assert Chem.MolToInchiKey(mol) == Chem.MolToInchiKey(expected), s
    with pytest.raises(ValueError, match="valence"):
        mol_from_smiles("C(C)(C)(C)(C)C")
    assert mol_from_smiles("C1CC") is None


def test_batch_equals_reference_molecule_by_molecule() -> None:
    """One batch mixing every path (stereo, dative bonds, charges, SDF-style Mols without a hint, invalid
    SMILES): each molecule's arrays equal its own reference featurisation."""
    smiles = TRICKY + _nci(400) + ["not a smiles", "C1CC"] + _moses(200)
    graphs = smiles_to_graphs(smiles)
    assert len(graphs) == len(smiles)
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    for s, mol, graph in zip(smiles, mols, graphs):
        assert (graph is None) == (mol is None), s
        if mol is None:
            continue
        ref = mol_to_graph_reference(mol)
        for key in GRAPH_KEYS:
            assert graph[key].dtype == ref[key].dtype and graph[key].flags.c_contiguous, (s, key)
            np.testing.assert_array_equal(graph[key], ref[key], err_msg=f"{s} {key}")
    valid = [m for m in mols if m is not None]
    hints = [None if i % 3 == 0 else Chem.MolToSmiles(m) for i, m in enumerate(valid)]
    # A hint must be the text the Mol was parsed from: re-parse the canonical SMILES for those.
    reparsed = [m if h is None else Chem.MolFromSmiles(h) for m, h in zip(valid, hints)]
    for mol, graph in zip(reparsed, mols_to_graphs(reparsed, hints)):
        ref = mol_to_graph_reference(mol)
        for key in GRAPH_KEYS:
            np.testing.assert_array_equal(graph[key], ref[key])


# CXSMILES: the extension sets what the SMILES part does not show (a radical, a cis/trans double bond, a
# coordinate bond), so the text cannot rule those features out.
CXSMILES = [
    "CCC |^1:1|",  # radical on the middle carbon
    "CC=CC |t:1|",  # trans double bond, no '/' in the text
    "CC=CC |c:1|",
    "CC |^5:0|",  # carbene-like: three radical electrons
    "[Fe]C |C:1.0|",  # coordinate (dative) bond
    "C[C@H](O)F |a:1|",  # absolute stereo group
    "CC(C)C |(0,0,;1,0,;2,0,;1,1,)|",  # coordinates only
    "CCC |^1:1| propyl",  # a name after the extension
]


@pytest.mark.parametrize("smiles", CXSMILES)
def test_cxsmiles_fast_path_equals_reference(smiles: str) -> None:
    mol = mol_from_smiles(smiles)
    assert mol is not None
    ref = mol_to_graph_reference(mol)
    for fast in (mol_to_graph(mol, smiles), smiles_to_graph(smiles), smiles_to_graphs(["CCO", smiles])[1]):
        for key in GRAPH_KEYS:
            np.testing.assert_array_equal(fast[key], ref[key], err_msg=f"{smiles} {key}")


def test_cxsmiles_features_reach_the_graph() -> None:
    radical = smiles_to_graph("CCC |^1:1|")
    assert radical["ogb_x"][:, 5].tolist() == [0, 1, 0]  # the radical electron on atom 1
    trans = smiles_to_graph("CC=CC |t:1|")
    double = trans["ogb_edge_attr"][:, 0] == 1
    assert set(trans["ogb_edge_attr"][double, 1].tolist()) == {2}  # E (OGB stereo index 2), not NONE
    # A malformed extension is a parse failure, never the SMILES part alone.
    assert smiles_to_graph("CCC |junk|") is None
