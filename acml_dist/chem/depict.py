"""224x224 grayscale depictions (RDKit Cairo), deterministic bytes for the same molecule.

`depict_png` is the raw drawing the featurisation stage stores in the shards (`data.images=true`).
`depict_array` is the image teacher's input with Img2Mol's published preprocessing (`fit_image`:
aspect-preserving fit onto a white square, a white border, resized back, autocontrast), as uint8 (0 = ink,
255 = paper); the `acml depict` stage stores these arrays as the `image` modality."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Optional

import numpy as np
from rdkit import Chem
from rdkit.Chem.Draw import rdMolDraw2D

if TYPE_CHECKING:
    from PIL import Image as PILImage

IMAGE_SIZE = 224
BORDER = 15  # Img2Mol draws a random 5-25 px white border in training; inference uses a fixed one


def _draw(mol: Chem.Mol, size: int, line_width: Optional[float] = None) -> bytes:
    drawer = rdMolDraw2D.MolDraw2DCairo(size, size)
    opts = drawer.drawOptions()
    opts.useBWAtomPalette()  # grayscale input to the image teacher, as in Img2Mol
    if line_width is not None:
        opts.bondLineWidth = float(line_width)
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, Chem.Mol(mol))
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def depict_png(mol: Chem.Mol, size: int = IMAGE_SIZE) -> bytes:
    """PNG bytes, mode L (grayscale), `size` x `size`."""
    from PIL import Image

    img = Image.open(io.BytesIO(_draw(mol, size))).convert("L")
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def fit_image(img: PILImage.Image, size: int = IMAGE_SIZE, border: int = BORDER) -> PILImage.Image:
    """Img2Mol's `fit_image`: scale the longer side to `size` (aspect kept), paste centred on a white
    square, add a white `border`, resize back to `size` x `size`, autocontrast. Mode L in, mode L out."""
    from PIL import Image, ImageOps

    img = img.convert("L")
    ratio = float(size) / max(img.size)
    img = img.resize(tuple(max(1, int(x * ratio)) for x in img.size), Image.BICUBIC)
    canvas = Image.new("L", (size, size), "white")
    canvas.paste(img, ((size - img.size[0]) // 2, (size - img.size[1]) // 2))
    if border > 0:
        canvas = ImageOps.expand(canvas, border, "white").resize((size, size), Image.BICUBIC)
    return ImageOps.autocontrast(canvas)


def depict_array(
    mol: Chem.Mol, size: int = IMAGE_SIZE, border: int = BORDER, line_width: Optional[float] = None
) -> np.ndarray:
    """The preprocessed depiction, uint8 (size, size), 255 = white paper. ValueError when RDKit draws
    nothing (an all-white image)."""
    from PIL import Image

    img = Image.open(io.BytesIO(_draw(mol, size, line_width)))
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, (0, 0), img)
        img = bg
    arr = np.asarray(fit_image(img, size, border), dtype=np.uint8)
    if int(arr.min()) >= 250:
        raise ValueError("blank depiction: RDKit drew no ink")
    return arr
