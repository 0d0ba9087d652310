"""Peak lists -> fixed-length binned spectra (numpy only): 13C NMR as in CReSS, 1H NMR, mass spectra.

A `BinSpec` cuts [low, high) into `n_bins` equal bins of width w. With `anchor="edge"` bin i covers
[low + i*w, low + (i+1)*w) (a peak at x falls in floor((x - low) / w)); with `anchor="center"` (the CReSS
13C convention, round((shift + 50) * 10)) bin i is centred on low + i*w and covers
[low + (i-0.5)w, low + (i+0.5)w).
A tolerance of 1e-6 bin absorbs decimal noise such as 0.3 * 10. Peaks outside the bins are dropped and
counted, or, with `out_of_range="clip"`, put in the first / last bin (what the CReSS teacher's own
`bin_nmr13c` does); NaN / infinite positions or intensities are always dropped and counted.
The same peaks give the same float32 array on every machine (no randomness, no floating-point sums whose
order depends on threads).

Defaults:
- 13C (CReSS): 4,000 bins of 0.1 ppm centred on -50.0, -49.9, ..., 349.9 ppm, one peak per carbon,
  binary (a bin is 1 where a peak falls), as the CReSS 13C encoder was trained;
- 1H: 0..12 ppm, 1,200 bins (0.01 ppm) by default, one peak per hydrogen, bins sum intensities (so a
  CH3 counts 3) and the spectrum is scaled to max 1;
- MS: m/z 0..1000 at 1.0 Da (nominal mass, GC-MS) by default, configurable (e.g. 0.01 Da for LC-MS),
  intensities summed per bin and scaled to max 1 (matchms' `normalize_intensities` does the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np

Normalize = Literal["max", "sum", "none"]
OutOfRange = Literal["drop", "clip"]
Reduce = Literal["sum", "max"]
Anchor = Literal["edge", "center"]
ArrayLike = Union[Sequence[float], np.ndarray]

_EPS_BINS = 1e-6


@dataclass(frozen=True)
class BinSpec:
    """A binned axis: `n_bins` equal bins over [low, high) plus how peaks are combined."""

    name: str
    low: float
    high: float
    n_bins: int
    binary: bool = False  # a bin is 1.0 where any peak falls (CReSS 13C); else intensities combine
    reduce: Reduce = "sum"  # how peaks in one bin combine: "sum" (peak lists), "max" (continuous traces)
    normalize: Normalize = "max"  # after binning: scale to max 1, to sum 1, or leave as is
    anchor: Anchor = "edge"  # "edge": bin i starts at low + i*w; "center": bin i is centred there (CReSS)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"bin range must be finite with high > low, got [{self.low}, {self.high})")
        if int(self.n_bins) < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        if self.reduce not in ("sum", "max"):
            raise ValueError(f"reduce must be 'sum' or 'max', got {self.reduce!r}")
        if self.normalize not in ("max", "sum", "none"):
            raise ValueError(f"normalize must be 'max', 'sum' or 'none', got {self.normalize!r}")
        if self.anchor not in ("edge", "center"):
            raise ValueError(f"anchor must be 'edge' or 'center', got {self.anchor!r}")

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.n_bins

    def centers(self) -> np.ndarray:
        """Bin centres (float64), e.g. for plots and tests."""
        shift = 0.0 if self.anchor == "center" else 0.5
        return self.low + (np.arange(self.n_bins) + shift) * self.width

    def bin_index(self, x: ArrayLike) -> np.ndarray:
        """Bin of each position (int64; may lie outside 0..n_bins-1 for out-of-range positions)."""
        pos = (np.asarray(x, dtype=np.float64) - self.low) * (self.n_bins / (self.high - self.low))
        shift = 0.5 if self.anchor == "center" else 0.0
        return np.floor(pos + shift + _EPS_BINS).astype(np.int64)


def nmr13c_spec() -> BinSpec:
    """CReSS 13C: 4,000 bins of 0.1 ppm centred on -50.0 .. 349.9 ppm, binary."""
    return BinSpec("nmr13c", -50.0, 350.0, 4000, binary=True, reduce="max", normalize="none", anchor="center")


def nmr1h_spec(n_bins: int = 1200, low: float = 0.0, high: float = 12.0) -> BinSpec:
    """1H over [low, high) ppm (default 0..12 ppm, 1,200 bins of 0.01 ppm); peaks summed, max 1."""
    return BinSpec("nmr1h", float(low), float(high), int(n_bins), binary=False, reduce="sum", normalize="max")


def ms_spec(mz_min: float = 0.0, mz_max: float = 1000.0, resolution: float = 1.0) -> BinSpec:
    """Mass spectrum over [mz_min, mz_max) at `resolution` Da per bin; intensities summed, max 1."""
    if not resolution > 0:
        raise ValueError(f"MS resolution must be > 0 Da, got {resolution}")
    n = (float(mz_max) - float(mz_min)) / float(resolution)
    n_bins = int(round(n))
    if n_bins < 1 or abs(n - n_bins) > 1e-6 * max(1.0, n):
        raise ValueError(
            f"m/z range {mz_max} - {mz_min} is not a whole number of {resolution} Da bins ({n:.6g})"
        )
    return BinSpec("ms", float(mz_min), float(mz_max), n_bins, binary=False, reduce="sum", normalize="max")


@dataclass(frozen=True)
class Binned:
    """A binned spectrum and what happened to its peaks."""

    spectrum: np.ndarray  # float32 (n_bins,)
    n_peaks: int  # peaks given
    n_binned: int  # peaks that landed in a bin
    n_out_of_range: int  # finite peaks outside [low, high) (dropped, or clipped into an edge bin)
    n_invalid: int  # NaN / infinite position or intensity (always dropped)


def bin_peaks(
    positions: ArrayLike,
    intensities: Optional[ArrayLike] = None,
    spec: Optional[BinSpec] = None,
    *,
    out_of_range: OutOfRange = "drop",
) -> Binned:
    """Bin a peak list (ppm or m/z positions, optional intensities, default 1.0 each) into `spec`.

    Negative intensities (e.g. phase errors in a processed NMR trace) are kept for `reduce="sum"`; use
    `reduce="max"` for continuous traces. Normalisation by max / sum is skipped when that is 0."""
    if spec is None:
        spec = nmr13c_spec()
    if out_of_range not in ("drop", "clip"):
        raise ValueError(f"out_of_range must be 'drop' or 'clip', got {out_of_range!r}")
    x = np.asarray(positions, dtype=np.float64).reshape(-1)
    if intensities is None:
        y = np.ones_like(x)
    else:
        y = np.asarray(intensities, dtype=np.float64).reshape(-1)
        if y.shape != x.shape:
            raise ValueError(f"{x.size} positions but {y.size} intensities")
    valid = np.isfinite(x) & np.isfinite(y)
    n_invalid = int((~valid).sum())
    x, y = x[valid], y[valid]
    idx = spec.bin_index(x)
    inside = (idx >= 0) & (idx < spec.n_bins)
    n_out = int((~inside).sum())
    if out_of_range == "clip":
        idx = np.clip(idx, 0, spec.n_bins - 1)
    else:
        idx, y = idx[inside], y[inside]
    out = np.zeros(spec.n_bins, dtype=np.float64)
    if spec.binary:
        out[idx] = 1.0
    elif spec.reduce == "sum":
        np.add.at(out, idx, y)
    else:
        filled = np.full(spec.n_bins, -np.inf)
        np.maximum.at(filled, idx, y)
        out = np.where(np.isfinite(filled), filled, 0.0)
    if not spec.binary and spec.normalize != "none":
        scale = np.abs(out).max() if spec.normalize == "max" else out.sum()
        if scale > 0:
            out = out / scale
    return Binned(out.astype(np.float32), int(valid.size), int(idx.size), n_out, n_invalid)


def spec_from_dict(kind: str, cfg: Optional[dict] = None) -> BinSpec:
    """The BinSpec of a modality name (`nmr13c`, `nmr1h`, `ms`) with optional settings from a config
    (`n_bins`, `low`, `high` for 1H; `mz_min`, `mz_max`, `resolution` for MS; 13C is fixed as in CReSS)."""
    cfg = dict(cfg or {})
    if kind == "nmr13c":
        return nmr13c_spec()
    if kind == "nmr1h":
        return nmr1h_spec(**{k: cfg[k] for k in ("n_bins", "low", "high") if k in cfg})
    if kind == "ms":
        return ms_spec(**{k: cfg[k] for k in ("mz_min", "mz_max", "resolution") if k in cfg})
    raise ValueError(f"unknown spectrum kind {kind!r} (nmr13c, nmr1h, ms)")


def pick_peaks(x: ArrayLike, y: ArrayLike, rel_height: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a continuous trace (e.g. a JCAMP-DX XYDATA NMR spectrum): points higher than both
    neighbours (plateaus count once, at their first point) and at least `rel_height` x the trace's maximum.
    Returns (positions, heights); empty when the trace is empty or has no positive maximum."""
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"{xa.size} positions but {ya.size} intensities")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if ya.size == 0 or not ya.max() > 0:
        return np.zeros(0), np.zeros(0)
    if ya.size < 3:
        i = int(np.argmax(ya))
        return xa[i : i + 1], ya[i : i + 1]
    padded = np.r_[-np.inf, ya, -np.inf]
    left = padded[1:-1] > padded[:-2]
    right = padded[1:-1] >= padded[2:]
    idx = np.flatnonzero(left & right & (ya >= rel_height * ya.max()))
    return xa[idx], ya[idx]
