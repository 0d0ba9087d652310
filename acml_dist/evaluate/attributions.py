"""Atom-level attributions by occlusion: how much a scalar readout of the graph embedding (e.g. a linear
probe for logP) changes when one atom's features are replaced by the mask token. Model-agnostic: it needs
only `model.encode`. Drawn on RDKit depictions as similarity maps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

# Mask values per schema: the Hu schema's atomic-number index 119 is its mask token; for OGB the last index
# of each feature vocabulary ("misc").
MASK = {"hu": (119, 0), "ogb": (118, 4, 11, 11, 9, 5, 5, 1, 1)}


def occlusion_attributions(model, smiles: str, schema: str, readout: Callable[[np.ndarray], np.ndarray]):
    """(mol, per-atom attribution = readout(full) - readout(atom masked)) for one molecule."""
    import torch
    from rdkit import Chem
    from torch_geometric.data import Batch

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.data.loader import graph_from_npz

    mol = Chem.MolFromSmiles(smiles)
    graph = graph_from_npz(mol_to_graph(mol), schema)  # node order = this mol's atom order
    variants = [graph]
    for atom in range(graph.num_nodes):
        g = graph.clone()
        g.x[atom] = torch.tensor(MASK[schema], dtype=g.x.dtype)
        variants.append(g)
    model.eval()
    with torch.no_grad():
        h = model.encode(Batch.from_data_list(variants)).float().numpy()
    scores = readout(h)
    return mol, scores[0] - scores[1:]


def draw_attributions(mol, weights: np.ndarray, path: Path, size: int = 300) -> Path:
    from rdkit.Chem import Draw
    from rdkit.Chem.Draw import SimilarityMaps

    drawer = Draw.MolDraw2DCairo(size, size)
    scale = float(np.abs(weights).max()) or 1.0
    SimilarityMaps.GetSimilarityMapFromWeights(mol, [float(w) / scale for w in weights], draw2d=drawer)
    drawer.FinishDrawing()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(drawer.GetDrawingText())
    return path
