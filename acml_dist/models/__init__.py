"""Models: the GIN graph encoder, projection heads and the ACML model (`acml_dist.models.ACMLModel`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ACMLModel", "GIN", "ProjectionHead"]


def __getattr__(name: str) -> Any:
    # torch / torch_geometric load only when a model is actually used (the CLI imports this package early).
    if name in ("ACMLModel", "ProjectionHead"):
        from acml_dist.models import acml

        return getattr(acml, name)
    if name == "GIN":
        from acml_dist.models.gin import GIN

        return GIN
    raise AttributeError(name)
