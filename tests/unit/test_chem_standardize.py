"""Standardisation: salts stripped, charges neutralised, filters and reject reasons, identifiers."""

from __future__ import annotations

import pytest
from rdkit import Chem

from acml_dist.chem.depict import depict_png
from acml_dist.chem.standardize import Reject, StandardResult, smiles_key, standardize
from acml_dist.config.data import StandardizeConfig

pytestmark = pytest.mark.unit


def test_salt_stripped_and_neutralised() -> None:
    res = standardize("CC(=O)[O-].[Na+]", StandardizeConfig())
    assert isinstance(res, StandardResult)
    assert res.smiles == "CC(=O)O" and res.hint is None
    assert res.inchikey == Chem.MolToInchiKey(Chem.MolFromSmiles("CC(=O)O"))
    assert res.formula == "C2H4O2" and res.heavy_atoms == 4 and res.scaffold == ""


def test_neutralize_off_keeps_charge() -> None:
    res = standardize("CC(=O)[O-]", StandardizeConfig(neutralize=False))
    assert isinstance(res, StandardResult) and "-" in res.smiles


def test_scaffold_and_hint() -> None:
    res = standardize("CCc1ccccc1", StandardizeConfig())
    assert isinstance(res, StandardResult)
    assert res.scaffold == "c1ccccc1" and res.hint == "CCc1ccccc1"


@pytest.mark.parametrize(
    ("text", "cfg", "reason"),
    [
        ("not_a_smiles(", StandardizeConfig(), "invalid_smiles"),
        ("C(C)(C)(C)(C)C", StandardizeConfig(), "invalid_smiles: Explicit valence for atom # 0 C"),
        ("", StandardizeConfig(), "empty"),
        ("C", StandardizeConfig(min_heavy_atoms=2), "too_few_heavy_atoms"),
        ("CCCCCCCCCC", StandardizeConfig(max_heavy_atoms=5), "too_many_heavy_atoms"),
        ("CCBr", StandardizeConfig(allowed_elements=["C", "N", "O"]), "element_not_allowed"),
    ],
)
def test_rejects(text: str, cfg: StandardizeConfig, reason: str) -> None:
    res = standardize(text, cfg)
    assert isinstance(res, Reject) and res.reason.startswith(reason)


def test_molblock_and_key() -> None:
    block = Chem.MolToMolBlock(Chem.MolFromSmiles("c1ccccc1O"))
    res = standardize(block, StandardizeConfig(), fmt="molblock")
    assert isinstance(res, StandardResult) and res.smiles == "Oc1ccccc1"
    assert smiles_key("CCO") == smiles_key("CCO") and len(smiles_key("CCO")) == 17


def test_depiction_is_grayscale_224_and_deterministic() -> None:
    import io

    from PIL import Image

    mol = Chem.MolFromSmiles("c1ccccc1CCN")
    png = depict_png(mol)
    img = Image.open(io.BytesIO(png))
    assert img.size == (224, 224) and img.mode == "L"
    assert depict_png(mol) == png


def test_cxsmiles_kept_or_rejected_with_reason() -> None:
    """A CXSMILES extension is read (radical, cis/trans) or, where neither the canonical SMILES nor the graph
    could hold it, the record is rejected with a reason; never silently dropped."""
    res = standardize("CCC |^1:1|", StandardizeConfig())
    assert isinstance(res, StandardResult) and res.smiles == "C[CH]C" and res.hint is None
    res = standardize("CC=CC |t:1|", StandardizeConfig())
    assert isinstance(res, StandardResult) and res.smiles == "C/C=C/C"
    for text, reason in [
        ("C[C@H](O)F |&1:1|", "unsupported_structure: enhanced stereo"),
        ("C[C@H](O)F |o1:1|", "unsupported_structure: enhanced stereo"),
        ("CCO |Sg:n:1,2::ht|", "unsupported_structure: polymer"),
        ("C1CC1 |LN:1:1.3|", "unsupported_structure: link nodes"),
        ("CCC |junk|", "invalid_smiles"),
    ]:
        res = standardize(text, StandardizeConfig())
        assert isinstance(res, Reject) and res.reason.startswith(reason), (text, res)
    res = standardize("C[C@H](O)F |a:1|", StandardizeConfig())  # absolute: what plain SMILES says
    assert isinstance(res, StandardResult) and res.smiles == "C[C@H](O)F"


def test_stereoisomers_assign_only_what_is_unassigned_within_the_limit() -> None:
    from acml_dist.chem.standardize import stereoisomers

    parent = standardize("OC(Cl)C(F)C=CC")  # two centres and a double bond: 8 isomers
    every = stereoisomers(parent, 64)
    assert len(every) == 8 and len({r.inchikey for r in every}) == 8
    assert all(r.inchikey != parent.inchikey and r.formula == parent.formula for r in every)
    drawn = stereoisomers(parent, 3, seed=5)
    assert len(drawn) == 3 and [r.smiles for r in drawn] == [
        r.smiles for r in stereoisomers(parent, 3, seed=5)
    ]
    assert {r.smiles for r in drawn} <= {r.smiles for r in every}
    # an assigned centre is kept: only the other one varies
    assigned = standardize("O[C@H](Cl)C(F)CC")
    centre = next(
        a.GetIdx() for a in assigned.mol.GetAtoms() if a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED
    )
    half = stereoisomers(assigned, 64)  # isomers are the parent's atoms with tags set: indices line up
    assert len(half) == 2
    assert {r.mol.GetAtomWithIdx(centre).GetChiralTag() for r in half} == {
        assigned.mol.GetAtomWithIdx(centre).GetChiralTag()
    }
    assert stereoisomers(standardize("c1ccccc1O"), 4) == []
    assert stereoisomers(standardize("C[C@H](N)C(=O)O"), 4) == []
    assert stereoisomers(parent, 0) == []
