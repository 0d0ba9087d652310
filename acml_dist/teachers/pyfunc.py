"""MLflow pyfunc wrapper of a teacher: DataFrame with `smiles` -> embeddings (imported only by registry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc


class TeacherPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from acml_dist.teachers import load_teacher
        from acml_dist.teachers.registry import config_from_artifacts

        root = Path(context.artifacts["teacher"])
        info = json.loads((root / "teacher.json").read_text())
        self.teacher = load_teacher(info["name"], config_from_artifacts(root))

    def predict(self, context, model_input, params=None):  # untyped: MLflow reads hints as a schema
        import pandas as pd

        smiles = list(model_input["smiles"]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        return self.teacher.encode_smiles(smiles).numpy()
