"""224x224 grayscale depictions (RDKit Cairo), deterministic bytes for the same molecule."""

from __future__ import annotations

import io

from rdkit import Chem
from rdkit.Chem.Draw import rdMolDraw2D


def depict_png(mol: Chem.Mol, size: int = 224) -> bytes:
    """PNG bytes, mode L (grayscale), `size` x `size`."""
    from PIL import Image

    drawer = rdMolDraw2D.MolDraw2DCairo(size, size)
    opts = drawer.drawOptions()
    opts.useBWAtomPalette()  # grayscale input to the image teacher, as in Img2Mol
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, Chem.Mol(mol))
    drawer.FinishDrawing()
    img = Image.open(io.BytesIO(drawer.GetDrawingText())).convert("L")
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()
