"""Hypothesis strategies for the fuzz tests: random valid molecules built atom by atom with RDKit, written as
SMILES (canonical or random atom order) and as CXSMILES whose extension carries what the SMILES part does
not show (radicals, cis/trans double bonds, coordinates, stereo groups), plus hostile texts around them.

One profile for every fuzz test: derandomised (the same examples on every run, so CI is stable), a bounded
number of examples, no example database, no deadline (the machine is shared)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rdkit import Chem

FUZZ = settings(
    derandomize=True,
    # CI: 60 examples per test; a deeper local hunt: ACML_FUZZ_EXAMPLES=1000 pytest tests/unit/test_fuzz_*
    max_examples=int(os.environ.get("ACML_FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (atomic number, bonds it can make); exotic elements as well as the organic subset
COMMON = [(6, 4), (6, 4), (6, 4), (7, 3), (8, 2), (16, 2), (9, 1), (17, 1), (35, 1), (15, 3)]
EXOTIC = [(5, 3), (14, 4), (34, 2), (53, 1), (26, 2), (78, 2), (11, 1), (30, 2), (54, 2), (92, 3), (118, 1)]
RINGS = ["c1ccccc1", "c1ccncc1", "c1ccsc1", "c1ccc2[nH]ccc2c1", "C1CCOC1", "c1cn[nH]c1"]


def _sanitized(mol: Chem.RWMol) -> Chem.Mol | None:
    try:
        m = Chem.Mol(mol)
        Chem.SanitizeMol(m)
        return m
    except Exception:
        return None


@st.composite
def molecules(draw, max_atoms: int = 24, exotic: bool = True) -> Chem.Mol:
    """A sanitised Mol: a random tree with ring closures and aromatic rings fused on, sometimes several
    fragments (salts, mixtures), with charges, isotopes, radicals and stereo where RDKit accepts them."""
    pool = COMMON + (EXOTIC if exotic else [])
    n = draw(st.integers(1, max_atoms))
    rw = Chem.RWMol()
    free: list[int] = []
    for i in range(n):
        z, valence = draw(st.sampled_from(pool))
        rw.AddAtom(Chem.Atom(z))
        free.append(valence)
        partners = [j for j in range(i) if free[j] > 0]
        if partners and valence > 0 and draw(st.integers(0, 19)) > 0:  # 1 in 20: a new fragment
            j = draw(st.sampled_from(partners))
            order = draw(st.integers(1, min(3, free[i], free[j])))
            rw.AddBond(
                j, i, {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}[order]
            )
            free[i] -= order
            free[j] -= order
    for _ in range(draw(st.integers(0, 2))):  # ring closures
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if i != j and free[i] > 0 and free[j] > 0 and rw.GetBondBetweenAtoms(i, j) is None:
            rw.AddBond(i, j, Chem.BondType.SINGLE)
            free[i] -= 1
            free[j] -= 1
    mol = _sanitized(rw) or Chem.Mol(Chem.MolFromSmiles("C"))
    if draw(st.booleans()):  # an aromatic ring bonded to an atom with a hydrogen to spare
        ring = Chem.MolFromSmiles(draw(st.sampled_from(RINGS)))
        combined = Chem.RWMol(Chem.CombineMols(mol, ring))
        hosts = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() > 0]
        if hosts and draw(st.booleans()):
            combined.AddBond(draw(st.sampled_from(hosts)), mol.GetNumAtoms(), Chem.BondType.SINGLE)
        mol = _sanitized(combined) or mol
    return _decorate(draw, mol)


def _decorate(draw, mol: Chem.Mol) -> Chem.Mol:
    """Charges, isotopes, radicals, chirality and cis/trans, each kept only where RDKit sanitises it."""
    for _ in range(draw(st.integers(0, 3))):
        rw = Chem.RWMol(mol)
        atom = rw.GetAtomWithIdx(draw(st.integers(0, rw.GetNumAtoms() - 1)))
        change = draw(st.sampled_from(["charge+", "charge-", "isotope", "radical", "radical", "chiral"]))
        if change.startswith("charge"):
            atom.SetFormalCharge(1 if change == "charge+" else -1)
        elif change == "isotope":
            atom.SetIsotope(draw(st.sampled_from([2, 13, 14, 18, 235])))
        elif change == "radical" and mol.GetAtomWithIdx(atom.GetIdx()).GetTotalNumHs() > 0:
            hydrogens = mol.GetAtomWithIdx(atom.GetIdx()).GetTotalNumHs()
            atom.SetNoImplicit(True)
            atom.SetNumExplicitHs(hydrogens - 1)
            atom.SetNumRadicalElectrons(1)
        elif change == "chiral":
            atom.SetChiralTag(draw(st.sampled_from([Chem.CHI_TETRAHEDRAL_CW, Chem.CHI_TETRAHEDRAL_CCW])))
        mol = _sanitized(rw) or mol
    for bond in mol.GetBonds():
        if bond.GetBondType() == Chem.BondType.DOUBLE and not bond.IsInRing() and draw(st.booleans()):
            a, b = bond.GetBeginAtom(), bond.GetEndAtom()
            na = [x.GetIdx() for x in a.GetNeighbors() if x.GetIdx() != b.GetIdx()]
            nb = [x.GetIdx() for x in b.GetNeighbors() if x.GetIdx() != a.GetIdx()]
            if na and nb:
                bond.SetStereoAtoms(na[0], nb[0])
                bond.SetStereo(
                    draw(st.sampled_from([Chem.BondStereo.STEREOCIS, Chem.BondStereo.STEREOTRANS]))
                )
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol


@st.composite
def smiles_texts(draw, max_atoms: int = 24, exotic: bool = True) -> str:
    """SMILES of a random molecule, canonical or in a random atom order (RDKit can always re-read it)."""
    mol = draw(molecules(max_atoms, exotic))
    if draw(st.booleans()):
        return Chem.MolToSmiles(mol)
    return Chem.MolToSmiles(mol, doRandom=True, canonical=False)


@st.composite
def cxsmiles_texts(draw, max_atoms: int = 24) -> str:
    """CXSMILES whose extension holds what the SMILES part leaves out: the radicals (written without
    brackets, as `|^1:i|`), cis/trans of double bonds written without '/' (`|c:i|`, `|t:i|`), 2D
    coordinates, and absolute or AND/OR stereo groups; sometimes a name after the extension."""
    mol = draw(molecules(max_atoms, exotic=False))
    plain = Chem.RWMol(mol)
    radicals = [a.GetIdx() for a in plain.GetAtoms() if a.GetNumRadicalElectrons() == 1]
    for i in radicals:  # the SMILES part shows the atom without its radical (implicit H fill it)
        atom = plain.GetAtomWithIdx(i)
        atom.SetNumRadicalElectrons(0)
        atom.SetNoImplicit(False)
        atom.SetNumExplicitHs(0)
    for bond in plain.GetBonds():
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    Chem.SanitizeMol(plain)
    text = Chem.MolToSmiles(plain)
    order = list(plain.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"])
    bonds = list(plain.GetPropsAsDict(True, True)["_smilesBondOutputOrder"])
    parts = []
    if radicals:
        parts.append("^1:" + ",".join(str(order.index(i)) for i in radicals))
    doubles = [
        k for k, b in enumerate(bonds) if plain.GetBondWithIdx(b).GetBondType() == Chem.BondType.DOUBLE
    ]
    if doubles and draw(st.booleans()):
        parts.append(draw(st.sampled_from(["c", "t"])) + ":" + str(draw(st.sampled_from(doubles))))
    if draw(st.booleans()):
        parts.append("(" + ";".join(f"{k}.0,{k % 3}.0," for k in range(len(order))) + ")")
    chiral = [order.index(a.GetIdx()) for a in mol.GetAtoms() if a.GetChiralTag() != Chem.CHI_UNSPECIFIED]
    if chiral and "@" in text and draw(st.booleans()):
        parts.append(draw(st.sampled_from(["a", "&1", "o1"])) + ":" + str(chiral[0]))
    name = draw(st.sampled_from(["", "", " name", "\tid 7"]))
    return f"{text} |{','.join(parts)}|{name}" if parts else text + name


HOSTILE = [
    "",
    " ",
    "C1CC",  # unclosed ring
    "C(C)(C)(C)(C)C",  # valence error
    "c1cccc1",  # cannot kekulise
    "[Xx]",  # no such element
    "CCC |junk|",  # unreadable extension
    "CC |^1:7|",  # extension names an atom that does not exist
    "\x00C",
    "C\ufffdC",  # a non-UTF-8 byte after errors="replace"
    "[C@@H](F)(Cl)Br.[Na+].[Cl-]",
    "[2H][2H]",
    "[H+]",
    "[Og]",
    "*C",
    "N->[Pt](<-N)(Cl)Cl",
]
