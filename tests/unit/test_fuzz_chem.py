"""Fuzzing the standardiser and the featuriser (hypothesis, derandomised): random valid molecules as SMILES
and CXSMILES, hostile texts, huge molecules. Never a crash, never a silent change: every text gives a
result or a reject with a reason; the fast graph path equals `mol_to_graph_reference`; what the input says
(radicals, stereo, isotopes, charges of a single neutralisable fragment) reaches the canonical SMILES."""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_molecules import FUZZ, HOSTILE, cxsmiles_texts, molecules, smiles_texts
from hypothesis import given
from hypothesis import strategies as st
from rdkit import Chem

from acml_dist.chem.featurize import GRAPH_KEYS, mol_to_graph_reference, mols_to_graphs, smiles_to_graphs
from acml_dist.chem.parse import mol_from_smiles
from acml_dist.chem.standardize import MAX_HEAVY_ATOMS, Reject, StandardResult, standardize
from acml_dist.config.data import StandardizeConfig

pytestmark = pytest.mark.unit

CFG = StandardizeConfig(min_heavy_atoms=1, max_heavy_atoms=10_000)


def _same_graph(graph: dict, ref: dict, text: str) -> None:
    assert set(graph) == set(GRAPH_KEYS)
    for key in GRAPH_KEYS:
        assert graph[key].dtype == ref[key].dtype, (text, key)
        np.testing.assert_array_equal(graph[key], ref[key], err_msg=f"{text!r} {key}")


def _rdkit(text: str) -> Chem.Mol | None:
    return Chem.MolFromSmiles(text.strip()) if text.strip() else None


@FUZZ
@given(
    st.lists(st.one_of(smiles_texts(), cxsmiles_texts(), st.sampled_from(HOSTILE)), min_size=1, max_size=12)
)
def test_fast_graphs_equal_reference(texts: list[str]) -> None:
    """A batch mixing SMILES, CXSMILES and hostile texts: each graph equals the reference graph of the Mol
    RDKit's own parser gives (CXSMILES extension read), and None exactly where RDKit gives no Mol."""
    graphs = smiles_to_graphs(texts)
    for text, graph in zip(texts, graphs):
        expected = Chem.MolFromSmiles(text)
        assert (graph is None) == (expected is None), text
        if graph is not None:
            _same_graph(graph, mol_to_graph_reference(expected), text)


@FUZZ
@given(molecules())
def test_mol_without_hint_and_canonical_hint(mol: Chem.Mol) -> None:
    """A Mol from an SDF record (no hint) and a Mol re-read from its canonical SMILES (hint) both equal the
    reference."""
    text = Chem.MolToSmiles(mol)
    reread = mol_from_smiles(text)
    graphs = mols_to_graphs([mol, reread], [None, text])
    _same_graph(graphs[0], mol_to_graph_reference(mol), text)
    _same_graph(graphs[1], mol_to_graph_reference(reread), text)


def _check_standardized(text: str, res: StandardResult | Reject) -> None:
    if isinstance(res, Reject):
        assert res.reason and res.reason.split(":")[0].strip(), text
        return
    assert isinstance(res, StandardResult)
    assert res.inchikey and len(res.inchikey) == 27 and res.heavy_atoms == res.mol.GetNumHeavyAtoms()
    assert Chem.MolFromSmiles(res.smiles) is not None, res.smiles  # the written SMILES can be read back
    assert Chem.MolToSmiles(res.mol) == res.smiles
    graph = mols_to_graphs([res.mol], [res.hint])[0]
    _same_graph(graph, mol_to_graph_reference(res.mol), text)
    parsed = _rdkit(text)
    assert parsed is not None, text
    single = len(Chem.GetMolFrags(parsed)) == 1
    if single and not any(a.GetFormalCharge() for a in parsed.GetAtoms()):
        # Nothing to standardise: the canonical SMILES is the input's, radicals and stereo included.
        assert res.smiles == Chem.MolToSmiles(parsed), text
    radicals = sum(a.GetNumRadicalElectrons() for a in parsed.GetAtoms())
    if single:
        assert sum(a.GetNumRadicalElectrons() for a in res.mol.GetAtoms()) == radicals, text


@FUZZ
@given(st.one_of(smiles_texts(), cxsmiles_texts(), st.sampled_from(HOSTILE)))
def test_standardize_never_crashes_nor_changes_silently(text: str) -> None:
    _check_standardized(text, standardize(text, CFG))


@FUZZ
@given(st.text(alphabet="CNOSPFIBrcnos()[]=#@+-123456789/\\.%*:|^$&, Hl", max_size=40))
def test_standardize_random_text(text: str) -> None:
    """Arbitrary text over the SMILES alphabet: a result or a reject with a reason, never an exception."""
    res = standardize(text, CFG)
    if isinstance(res, StandardResult):
        _check_standardized(text, res)
    else:
        assert res.reason


@FUZZ
@given(st.lists(smiles_texts(max_atoms=12), min_size=2, max_size=4))
def test_salts_and_mixtures_keep_the_largest_fragment(parts: list[str]) -> None:
    """A mixture keeps one of its fragments, one that is largest by heavy atoms."""
    text = ".".join(parts)
    res = standardize(text, CFG)
    if isinstance(res, Reject):
        assert res.reason
        return
    frags = Chem.GetMolFrags(_rdkit(text), asMols=True)
    assert res.heavy_atoms <= max(f.GetNumHeavyAtoms() for f in frags)
    assert "." not in res.smiles or any("." in Chem.MolToSmiles(f) for f in frags)


@pytest.mark.parametrize(
    "text",
    ["C" * 20_000, "C(" * 3000 + "C" + ")" * 3000, "C1" + "C" * 2000 + "C1", "c1ccccc1" * 400],
    ids=["chain-20000", "nested-3000", "ring-2000", "benzenes-2400"],
)
def test_huge_molecules_rejected_quickly(text: str) -> None:
    """Past InChI's atom limit a record is rejected at once with its reason, whatever the config allows
    (a 20,000-atom chain crashed RDKit's SMILES writer; a 2,000-atom ring took ~40 s to be rejected)."""
    for cfg in (None, CFG):
        res = standardize(text, cfg)
        assert isinstance(res, Reject) and res.reason.startswith("too_many_heavy_atoms"), res
    assert mol_from_smiles(text).GetNumAtoms() > MAX_HEAVY_ATOMS
    big = Chem.MolFromSmiles(text)
    _same_graph(mols_to_graphs([big], [text])[0], mol_to_graph_reference(big), "huge")
