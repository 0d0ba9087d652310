"""Parse, standardise and identify one molecule with RDKit (MolStandardize); no torch here.

One parse serves every output: the returned `StandardResult` carries the standardised `Mol`, from which the
caller featurises the graph and draws the depiction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional, Union

from rdkit import Chem, RDLogger
from rdkit.Chem import rdMolDescriptors
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

from acml_dist.chem.parse import mol_from_smiles, rdkit_error

RDLogger.DisableLog("rdApp.*")  # parse errors become reject reasons, not stderr noise


# Above InChI's 1,024-atom limit no InChIKey exists (the record would be rejected anyway, after minutes in
# InChI and the scaffold code for a 2,000-atom ring), and RDKit's SMILES writer recurses once per atom (a
# 20,000-atom chain overflows the stack: a segfault). The hard cap rejects first, whatever the config says.
MAX_HEAVY_ATOMS = 1024


@dataclass
class StandardResult:
    mol: Chem.Mol
    smiles: str  # canonical isomeric SMILES
    inchikey: str
    formula: str
    scaffold: str  # Bemis-Murcko scaffold SMILES ("" for acyclic molecules)
    heavy_atoms: int
    # SMILES the graph was built from; lets the featuriser skip per-atom look-ups the text rules out.
    hint: Optional[str]


@dataclass
class Reject:
    reason: str


class _Tools:
    """MolStandardize objects are built once per process (they parse their rule sets on construction)."""

    _instance: Optional[_Tools] = None

    def __init__(self) -> None:
        self.fragment = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
        self.uncharger = rdMolStandardize.Uncharger(canonicalOrder=True)

    @classmethod
    def get(cls) -> _Tools:
        if cls._instance is None:
            cls._instance = _Tools()
        return cls._instance


def _cfg(cfg: Any, key: str, default: Any) -> Any:
    return getattr(cfg, key, default) if cfg is not None else default


def parse(text: str, fmt: str = "smiles") -> Union[Chem.Mol, Reject]:
    """SMILES or a mol block (SDF record) -> sanitised Mol, or a Reject naming why not."""
    text = text.strip() if fmt != "molblock" else text
    if not text:
        return Reject("empty")
    try:
        mol = mol_from_smiles(text) if fmt == "smiles" else Chem.MolFromMolBlock(text)
    except ValueError as exc:  # parsed, but RDKit's sanitisation refused it: keep RDKit's reason
        return Reject(f"invalid_smiles: {exc}")
    except Exception as exc:  # RDKit raises for a few malformed inputs instead of returning None
        return Reject(f"parse_error: {exc}")
    if mol is None:
        category = "invalid_smiles" if fmt == "smiles" else "invalid_molblock"
        message = rdkit_error(text, fmt)
        if not message and fmt == "smiles" and "|" in text:
            message = "CXSMILES extension not readable"
        return Reject(f"{category}: {message}" if message else category)
    if mol.GetNumAtoms() == 0:
        return Reject("empty")
    return mol


def standardize(
    text: Union[str, Chem.Mol], cfg: Any = None, fmt: str = "smiles"
) -> Union[StandardResult, Reject]:
    """Standardise one record: largest organic fragment, neutralise, filters, then the identifiers.

    `cfg` is a `StandardizeConfig` (or None for defaults). `text` may already be a Mol (SDF reader)."""
    mol = text if isinstance(text, Chem.Mol) else parse(text, fmt)
    if isinstance(mol, Reject):
        return mol
    # The text may rule out work below, but a CXSMILES extension (`|...|`) sets what its SMILES part hides.
    hint = text if isinstance(text, str) and fmt == "smiles" and "|" not in text else None
    if hint is None:
        lost = unrepresentable(mol)
        if lost:
            return Reject(f"unsupported_structure: {lost}")
    tools = _Tools.get()
    changed = False
    try:
        # Text checks skip the MolStandardize calls that cannot change anything (most drug-like SMILES).
        if _cfg(cfg, "largest_fragment", True) and (hint is None or "." in hint):
            if len(Chem.GetMolFrags(mol)) > 1:
                mol = tools.fragment.choose(mol)
                changed = True
        if _cfg(cfg, "neutralize", True) and (hint is None or "+" in hint or "-" in hint):
            if any(a.GetFormalCharge() for a in mol.GetAtoms()):
                mol = tools.uncharger.uncharge(mol)
                changed = True
    except Exception as exc:
        return Reject(f"standardize_error: {exc}")
    if changed:
        hint = None
    heavy = mol.GetNumHeavyAtoms()
    if heavy < _cfg(cfg, "min_heavy_atoms", 1):
        return Reject(f"too_few_heavy_atoms: {heavy}")
    if heavy > min(_cfg(cfg, "max_heavy_atoms", MAX_HEAVY_ATOMS), MAX_HEAVY_ATOMS):
        return Reject(f"too_many_heavy_atoms: {heavy}")
    allowed = list(_cfg(cfg, "allowed_elements", []) or [])
    if allowed:
        symbols = {a.GetSymbol() for a in mol.GetAtoms()}
        bad = sorted(symbols - set(allowed) - {"H"})
        if bad:
            return Reject(f"element_not_allowed: {','.join(bad)}")
    try:
        smiles = Chem.MolToSmiles(mol)
        inchikey = Chem.MolToInchiKey(mol)
        formula = rdMolDescriptors.CalcMolFormula(mol)
        scaffold = scaffold_smiles(mol)
    except Exception as exc:
        return Reject(f"identifier_error: {exc}")
    if not inchikey:
        return Reject("no_inchikey")
    return StandardResult(mol, smiles, inchikey, formula, scaffold, heavy, hint)


# Substance groups whose meaning (a repeat unit, a copolymer, a mixture) a single molecule's graph and
# canonical SMILES cannot hold; data and abbreviation groups only annotate and are kept.
_POLYMER_SGROUPS = frozenset({"SRU", "COP", "ALT", "RAN", "BLO", "GRA", "MON", "MER", "ANY", "CRO", "MOD"})


def unrepresentable(mol: Chem.Mol) -> str:
    """What a CXSMILES / mol block says that the canonical SMILES and the graph would drop, "" if nothing:
    enhanced stereo (an AND/OR group: racemic or unknown configuration; written out it would claim one
    absolute configuration), polymer substance groups, link nodes (a query, not a molecule)."""
    relative = [g for g in mol.GetStereoGroups() if g.GetGroupType() != Chem.StereoGroupType.STEREO_ABSOLUTE]
    if relative:
        return "enhanced stereo (AND/OR stereo group)"
    kinds = {g.GetProp("TYPE") for g in Chem.GetMolSubstanceGroups(mol) if g.HasProp("TYPE")}
    if kinds & _POLYMER_SGROUPS:
        return f"polymer substance group ({','.join(sorted(kinds & _POLYMER_SGROUPS))})"
    if mol.HasProp("_molLinkNodes"):
        return "link nodes"
    return ""


def stereoisomers(res: StandardResult, limit: int, seed: int = 0) -> list[StandardResult]:
    """Up to `limit` stereoisomers of a standardised molecule, with every stereocentre and double bond it
    leaves unassigned assigned (RDKit's enumeration; assigned elements are kept; a random draw fixed by
    `seed` where there are more). [] when nothing is unassigned. Each isomer has its own SMILES and InChIKey;
    formula, heavy atoms and scaffold are the parent's, so a scaffold split keeps the isomers together.
    Geometrically impossible isomers (some bridged rings) are not weeded out: that needs a 3-D embedding
    per isomer (`tryEmbedding`), too slow for a corpus."""
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    if limit <= 0:
        return []
    options = StereoEnumerationOptions(
        onlyUnassigned=True, unique=True, maxIsomers=limit, rand=seed, tryEmbedding=False
    )
    out = []
    for isomer in EnumerateStereoisomers(res.mol, options=options):
        smiles = Chem.MolToSmiles(isomer)
        if smiles == res.smiles:  # nothing was left unassigned: the enumeration returns the molecule itself
            continue
        inchikey = Chem.MolToInchiKey(isomer)
        if inchikey and inchikey != res.inchikey:
            out.append(
                StandardResult(isomer, smiles, inchikey, res.formula, res.scaffold, res.heavy_atoms, None)
            )
    return out


def scaffold_smiles(mol: Chem.Mol) -> str:
    """Bemis-Murcko scaffold as canonical SMILES; "" when the molecule has no ring."""
    if mol.GetRingInfo().NumRings() == 0:
        return ""
    return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol))


def smiles_key(smiles: str) -> str:
    """Stable sample key from a canonical SMILES: `h` + 16 hex digits of its sha1."""
    return "h" + hashlib.sha1(smiles.encode()).hexdigest()[:16]


def inchikey_of(smiles: str, cfg: Any = None) -> Optional[str]:
    """InChIKey of a SMILES after the same standardisation as the corpus (leakage lists); None if invalid."""
    res = standardize(smiles, cfg)
    return res.inchikey if isinstance(res, StandardResult) else None
