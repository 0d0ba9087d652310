"""MLflow pyfunc of a registered teacher, `loader_module` style: the MLmodel names this module and its data
is the `teacher/` folder (teacher.json + weights); nothing is pickled. DataFrame with `smiles` ->
embeddings (N, dim) float32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from acml_dist.teachers import load_teacher
from acml_dist.teachers.artifacts import config_from_artifacts


class TeacherModel:
    def __init__(self, folder: Path) -> None:
        info = json.loads((folder / "teacher.json").read_text())
        self.teacher = load_teacher(info["name"], config_from_artifacts(folder))

    def predict(self, model_input: Any, params: Optional[dict[str, Any]] = None) -> Any:
        import pandas as pd

        smiles = list(model_input["smiles"]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        return self.teacher.encode_smiles([str(s) for s in smiles]).numpy()


def _load_pyfunc(data_path: str, model_config: Any = None) -> TeacherModel:
    """MLflow's entry point: `data_path` is the logged `teacher/` folder."""
    return TeacherModel(Path(data_path))
