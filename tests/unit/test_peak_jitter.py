"""The spectrum teachers' online augmentation (`training.nmr_pretrain.jitter_peaks`): every peak moves by at
most `shift` bins, peaks drop at about the asked rate but never all of a spectrum's, a collision keeps the
larger value, and no augmentation returns the batch untouched."""

from __future__ import annotations

import pytest
import torch

from acml_dist.training.nmr_pretrain import jitter_peaks

pytestmark = pytest.mark.unit


def test_peaks_move_at_most_shift_bins_and_drop_at_the_asked_rate() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 300)
    cols = torch.randperm(280, generator=gen)[:10] + 10  # 10 peaks a row, away from the edges
    x[:, cols] = 1.0
    y = jitter_peaks(x, gen, shift=3, drop=0.3)
    assert y.shape == x.shape and set(y.unique().tolist()) <= {0.0, 1.0}
    for row in y[:20]:
        for col in row.nonzero().flatten().tolist():
            assert (cols - col).abs().min() <= 3
    kept = y.sum() / x.sum()
    assert 0.6 < kept < 0.8  # ~70% kept; collisions of two moved peaks make it a little lower
    assert not torch.equal(y[0], y[1])  # each row its own draw


def test_every_spectrum_keeps_a_peak_and_collisions_keep_the_larger() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(50, 20)
    x[:, 7] = 0.4
    x[:, 8] = 0.9
    y = jitter_peaks(x, gen, shift=0, drop=1.0)  # every peak but each row's first dropped
    assert (y > 0).sum(1).eq(1).all() and torch.allclose(y[:, 7], torch.full((50,), 0.4))
    one = torch.zeros(1, 5)
    one[0, 1], one[0, 2] = 0.3, 0.8
    merged = [jitter_peaks(one, gen, shift=1) for _ in range(200)]
    assert any(m.count_nonzero() == 1 and m.max() == 0.8 for m in merged)  # both on one bin: the larger
    assert all(m.count_nonzero() in (1, 2) and m.max() == 0.8 for m in merged)


def test_no_augmentation_is_the_identity() -> None:
    x = torch.rand(4, 10)
    assert jitter_peaks(x, torch.Generator(), shift=0, drop=0.0) is x


def test_the_jitter_is_asked_in_axis_units_and_defaults_per_modality() -> None:
    from types import SimpleNamespace

    from acml_dist.training.teacher_job import PEAK_SHIFT, shift_bins

    def cfg(modality: str, shift: float | None = None) -> SimpleNamespace:
        return SimpleNamespace(modality=modality, peak_shift=shift)

    assert shift_bins(cfg("nmr13c"), 0.1) == round(PEAK_SHIFT["nmr13c"] / 0.1) > 0  # 4,000 bins over 400 ppm
    assert shift_bins(cfg("nmr1h"), 0.01) == round(PEAK_SHIFT["nmr1h"] / 0.01)
    assert shift_bins(cfg("ms"), 1.0) == 0  # fragment masses do not drift
    assert shift_bins(cfg("nmr13c", 0.5), 0.1) == 5 and shift_bins(cfg("nmr1h", 0.0), 0.01) == 0
    # no binning recorded: no default jitter; an explicit one is taken in bins
    assert shift_bins(cfg("nmr13c"), None) == 0 and shift_bins(cfg("nmr13c", 3), None) == 3
