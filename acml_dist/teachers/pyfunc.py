"""MLflow pyfunc wrapper of a teacher: DataFrame with `smiles` -> embeddings (imported only by registry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc


class TeacherPyfunc(mlflow.pyfunc.PythonModel):
    # predict() is untyped, so MLflow has nothing to validate: skip its predict wrapper and the warning it
    # prints on every import (the flag MLflow sets on its own untyped models)
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from acml_dist.teachers import load_teacher
        from acml_dist.teachers.registry import config_from_artifacts

        root = Path(context.artifacts["teacher"])
        info = json.loads((root / "teacher.json").read_text())
        self.teacher = load_teacher(info["name"], config_from_artifacts(root))

    def predict(self, context, model_input, params=None):
        import pandas as pd

        smiles = list(model_input["smiles"]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        return self.teacher.encode_smiles(smiles).numpy()
