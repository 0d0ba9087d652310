"""SMILES -> sanitised Mol, the same Mol `Chem.MolFromSmiles` returns, a quarter cheaper for most inputs.

`Chem.MolFromSmiles` parses, sanitises, then runs stereo perception (about a quarter of its time on
drug-like SMILES). Text with no stereo marks ('@', '/', '\\'), no explicit hydrogen atoms and no CXSMILES
extension has nothing for stereo perception to find, so it is parsed without it; anything else takes the
full call. The graph, canonical SMILES and InChIKey tests compare both routes.

CXSMILES (`SMILES |extension| name`) take the full call with the CXSMILES parser switched on explicitly and
strict: an extension RDKit cannot read fails the parse (a reject) instead of being dropped in silence."""

from __future__ import annotations

import re
from typing import Optional

from rdkit import Chem, rdBase

# '[H]', '[2H]', '[H+]': hydrogen atoms that MolFromSmiles would merge into their neighbours
_EXPLICIT_H = re.compile(r"\[\d*H[^a-z]")
_NEEDS_FULL_PARSE = re.compile(r"[@/\\|]")


def _full_params() -> Chem.SmilesParserParams:
    params = Chem.SmilesParserParams()
    params.allowCXSMILES = True  # radicals, cis/trans, coordinate bonds, stereo groups from `|...|`
    params.strictCXSMILES = True  # an unreadable extension is an error, not ignored
    params.parseName = True  # text after the extension is a name, not SMILES
    params.sanitize = True
    return params


_FULL_PARAMS = _full_params()


def mol_from_smiles(smiles: str) -> Optional[Chem.Mol]:
    """Sanitised Mol, or None when RDKit cannot parse or sanitise the text. Raises ValueError with RDKit's
    message for a SMILES that parses but does not sanitise (e.g. a valence error) on the fast route."""
    if _NEEDS_FULL_PARSE.search(smiles) or _EXPLICIT_H.search(smiles):
        return Chem.MolFromSmiles(smiles, _FULL_PARAMS)
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
    # AtomValenceException, KekulizeException, ...: the molecules MolFromSmiles rejects
    except Exception as exc:
        raise ValueError(str(exc)) from None
    return mol


# "[14:51:22] SMILES Parse Error: unclosed ring for input: 'C1CC'" -> the text after the timestamp
_LOG_TIMESTAMP = re.compile(r"^\[[0-9:]+\]\s*")


def rdkit_error(text: str, fmt: str = "smiles") -> str:
    """RDKit's first error line for a text it would not parse (re-parsed under a log capture, so only
    failing records pay for it); "" when RDKit says nothing or is too old to capture (< 2025.09)."""
    capture = getattr(rdBase, "CaptureErrorLog", None)
    if capture is None:
        return ""
    with capture() as log:
        Chem.MolFromSmiles(text) if fmt == "smiles" else Chem.MolFromMolBlock(text)
    try:
        messages = log.messages
    except UnicodeDecodeError:  # RDKit's echo of the input cut a multi-byte character (found by fuzzing)
        return "RDKit's message about this input is not valid UTF-8"
    lines = [_LOG_TIMESTAMP.sub("", line).strip() for line in messages.splitlines()]
    return next((line[:200] for line in lines if line), "")
