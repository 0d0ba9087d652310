"""The probe table when most molecules lack most modalities: every teacher is a column, each compared with
the GIN on the same molecules.

Teachers present for (almost) every evaluated molecule share one table with the ACML GIN and the
random-init GIN over the molecules that have them all. A sparse teacher (a spectrum or image that only a
part of the corpus has) would shrink that intersection to nothing, so it gets its own table over the
molecules that have it: the ACML GIN, the random-init GIN and that teacher, probed on the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.evaluate import plots, report
from acml_dist.evaluate.probes import probe_table

DENSE = 0.99  # a teacher present for at least this fraction of the evaluated molecules joins the main table
MIN_MOLECULES = 10  # fewer cannot be cross-validated 5-fold: the section says so instead


def _key(*parts: Any) -> str:
    return "_".join(str(p) for p in parts).replace(" ", "_").replace("/", "_")


def _table(data: dict, idx: np.ndarray, teachers: list[str]) -> tuple[Any, list[str]]:
    smiles = [data["smiles"][i] for i in idx]
    sources = {"ACML GIN": data["h"][idx], "random-init GIN": data["h_random"][idx]}
    sources.update({f"teacher {n}": data[f"raw:{n}"][idx] for n in teachers})
    return probe_table(sources, smiles), list(sources)


def probe_section(data: dict, teachers: list[str], ecfg: Any, figures: Path) -> tuple[str, dict, Any]:
    """Markdown, flat metrics (`probe_<property>_<source>`; a sparse teacher's rows also
    `probe_<property>_ACML_GIN_on_<teacher>` / `..._random-init_GIN_on_<teacher>`) and the main table."""
    n = len(data["smiles"])
    masks = {t: data[f"mask:{t}"].astype(bool) for t in teachers}
    dense = [t for t in teachers if n and masks[t].mean() >= DENSE]
    sparse = [t for t in teachers if t not in dense]
    sel = np.ones(n, dtype=bool)
    for t in dense:
        sel &= masks[t]
    idx = np.flatnonzero(sel)[: ecfg.probe_molecules]
    table, names = _table(data, idx, dense)
    plots.probe_bars(table, names, figures / "probes.png")
    rows = table.to_dict("records")
    metrics = {_key("probe", row["property"], src): row[src] for row in rows for src in names}
    text = [
        f"{len(idx)} molecules, 5-fold cross-validation.\n\n"
        + report.table(rows, ["property", "metric"] + names)
    ]
    for t in sparse:
        have = np.flatnonzero(masks[t])
        sub = have[: ecfg.probe_molecules]
        if len(sub) < MIN_MOLECULES:
            text.append(
                f"**teacher {t}**: {len(sub)} evaluated molecules have this modality, too few to probe."
            )
            continue
        sub_table, sub_names = _table(data, sub, [t])
        sub_rows = sub_table.to_dict("records")
        for row in sub_rows:
            metrics[_key("probe", row["property"], f"teacher {t}")] = row[f"teacher {t}"]
            for src in sub_names[:2]:
                metrics[_key("probe", row["property"], f"{src} on {t}")] = row[src]
        text.append(
            f"**teacher {t}** ({len(have)} evaluated molecules have this modality, {len(sub)} probed; "
            "the GINs on the same molecules):"
            "\n\n" + report.table(sub_rows, ["property", "metric"] + sub_names)
        )
    return "\n\n".join(text), metrics, table
