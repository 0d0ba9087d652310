"""The `acml-gin` embedding model as MLflow serves it: weights + JSON config + this module, nothing pickled.

The registered model is an MLflow pyfunc of the `loader_module` kind: its MLmodel names
`acml_dist.embedder` and its data is a saved-model directory (`model.safetensors` + `config.json`, see
`models/io.py`); MLflow calls `_load_pyfunc(data_path)` from the installed package. `check_model_files`
refuses anything else (a `python_model.pkl`, another loader) before acml-dist loads or serves a model.

Every row gets an embedding or a reason: `predict(DataFrame[smiles]) -> DataFrame[embedding, error]`, where
`embedding` is a list of floats or None and `error` None or why not (not a string, empty, too long, RDKit's
parse message, outside the heavy-atom bounds the model was trained with, ...). Input goes through the same
`standardize` + `mol_to_graph` route as the shards, with the standardisation config stored in the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from acml_dist.config.checks import MAX_HEAVY_ATOMS_LIMIT
from acml_dist.errors import UnsafeFileError

LOADER_MODULE = "acml_dist.embedder"
# RDKit's SMILES writer segfaults on molecules of ~20,000 atoms (a long chain: 15,000 passes, 20,000 kills
# the process); served input is capped far below that whatever the model's own bound says (the same cap
# config validation puts on data.standardize.max_heavy_atoms).
HARD_MAX_HEAVY_ATOMS = MAX_HEAVY_ATOMS_LIMIT
# A SMILES longer than this many characters per allowed heavy atom (plus slack) is refused before RDKit
# parses it: bracket atoms with isotope, chirality, H count and charge take ~12 characters.
CHARS_PER_HEAVY_ATOM = 16


def standardize_config(saved: Any) -> Any:
    """The StandardizeConfig a model was trained with (config.json "standardize": a dict, or a
    StandardizeConfig / DictConfig) as a new DictConfig; the defaults (2-100 heavy atoms) for a model saved
    before it was recorded (None)."""
    from omegaconf import OmegaConf

    from acml_dist.config.data import StandardizeConfig

    cfg = OmegaConf.structured(StandardizeConfig)
    return OmegaConf.merge(cfg, saved) if saved else cfg


def row_error(value: Any, max_chars: int) -> Optional[str]:
    """Why a raw input value cannot be a SMILES, before RDKit sees it; None when it may be one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if not isinstance(value, str):
        return f"not_a_string: {type(value).__name__}"
    if not value.strip():
        return "empty"
    if len(value) > max_chars:
        return f"too_long: {len(value)} characters (limit {max_chars})"
    if "\x00" in value:
        return "invalid_smiles: NUL character"
    return None


def embed_rows(
    model: Any, values: list[Any], schema: str, std_cfg: Any = None, batch_size: int = 256
) -> tuple[Any, list[Optional[str]]]:
    """(N, emb_dim) float32 embeddings (NaN rows where none) and one error (None or a reason) per value."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.chem.standardize import Reject, standardize
    from acml_dist.data.loader import graph_from_npz

    std_cfg = standardize_config(std_cfg)  # a copy, whatever was passed
    std_cfg.max_heavy_atoms = min(int(std_cfg.max_heavy_atoms), HARD_MAX_HEAVY_ATOMS)
    max_chars = CHARS_PER_HEAVY_ATOM * int(std_cfg.max_heavy_atoms) + 100
    out = np.full((len(values), model.gin.emb_dim), np.nan, dtype=np.float32)
    errors: list[Optional[str]] = [None] * len(values)
    graphs, rows = [], []
    for i, value in enumerate(values):
        errors[i] = row_error(value, max_chars)
        if errors[i]:
            continue
        std = standardize(value, std_cfg)
        if isinstance(std, Reject):
            errors[i] = std.reason
            continue
        try:
            graphs.append(graph_from_npz(mol_to_graph(std.mol, std.hint), schema))
        except Exception as exc:  # an RDKit corner the featuriser cannot handle: this row's reason
            errors[i] = f"featurize_error: {exc}"
            continue
        rows.append(i)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start : start + batch_size])
            out[rows[start : start + batch_size]] = model.encode(batch).float().numpy()
    return out, errors


class GinEmbedder:
    """A loaded saved-model dir: `predict(DataFrame with "smiles") -> DataFrame[embedding, error]`."""

    def __init__(self, model_dir: str | Path) -> None:
        from acml_dist.models.io import load_model, read_config

        self.model_dir = Path(model_dir)
        self.model = load_model(model_dir)
        self.schema = self.model.model_cfg.get("schema", "hu")
        self.std_cfg = standardize_config(read_config(model_dir).get("standardize"))

    def embed(self, values: list[Any]) -> tuple[Any, list[Optional[str]]]:
        return embed_rows(self.model, values, self.schema, self.std_cfg)

    def predict(self, model_input: Any, params: Optional[dict[str, Any]] = None) -> Any:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            if "smiles" not in model_input.columns:
                raise ValueError(f"input needs a 'smiles' column (columns: {list(model_input.columns)})")
            values = model_input["smiles"].tolist()
        else:
            values = list(model_input)
        emb, errors = self.embed(values)
        embedding = [None if err else [float(v) for v in row] for row, err in zip(emb, errors)]
        return pd.DataFrame({"embedding": embedding, "error": errors}, dtype=object)


def _load_pyfunc(data_path: str, model_config: Any = None) -> GinEmbedder:
    """MLflow's entry point for a `loader_module` pyfunc: `data_path` is the saved-model dir it stored."""
    from acml_dist.models.io import is_model_dir

    path = Path(data_path)
    found = path if is_model_dir(path) else next((p for p in sorted(path.iterdir()) if is_model_dir(p)), None)
    if found is None:
        raise FileNotFoundError(f"{data_path}: no saved acml model (config.json + model.safetensors)")
    return GinEmbedder(found)


def check_model_files(model_dir: str | Path, source: str, loader: str = LOADER_MODULE) -> None:
    """Refuse an MLflow model dir that is not an acml-gin weights model before anything in it is loaded: its
    MLmodel must name this loader module (or `loader`: the fine-tuned predictors' own) only (no python_model /
    cloudpickle flavor, no bundled code) and no file may be a pickle. `source` (the URI) goes in the
    message."""
    import yaml

    root = Path(model_dir)
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        return  # a plain saved-model dir (acml train's model/): weights + JSON only, read by models/io.py
    meta = yaml.safe_load(mlmodel.read_text()) or {}
    flavors = meta.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    problems = []
    if set(flavors) - {"python_function"}:
        problems.append(f"flavors {sorted(flavors)}")
    if pyfunc.get("loader_module") != loader:
        problems.append(f"loader {pyfunc.get('loader_module')!r}")
    for key in ("python_model", "cloudpickle_version", "code"):
        if pyfunc.get(key):
            problems.append(f"{key} {pyfunc[key]!r}")
    pickles = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".pkl", ".pickle"))
    if pickles:
        problems.append(f"pickled files {pickles}")
    if problems:
        raise UnsafeFileError(
            f"{source}: not an acml-gin weights model ({'; '.join(problems)}); refusing to load it, since "
            "loading could run code. Register it again with this acml-dist (weights + config, no pickle)."
        )
