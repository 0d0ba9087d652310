"""Logging that names the rank and the stage: `[rank 0] featurize: ...`.

Worker processes (Ray tasks, non-zero ranks) log at WARNING unless ACML_LOG_LEVEL says otherwise, so a
2-rank run prints one stream of progress, not two."""

from __future__ import annotations

import logging
import os
import sys


def current_rank() -> int:
    for var in ("RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                pass
    return 0


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = current_rank()
        return True


_configured = False


def get_logger(stage: str) -> logging.Logger:
    """Logger for one pipeline stage (featurize, embed, train, evaluate, register, ...)."""
    global _configured
    if not _configured:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_RankFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s [rank %(rank)s] %(name)s: %(message)s", datefmt="%H:%M:%S")
        )
        root = logging.getLogger("acml")
        root.addHandler(handler)
        root.propagate = False
        default = "INFO" if current_rank() == 0 else "WARNING"
        root.setLevel(os.environ.get("ACML_LOG_LEVEL", default).upper())
        _configured = True
    return logging.getLogger(f"acml.{stage}")
