"""Binning of peak lists into fixed spectra: bin edges, out-of-range and invalid peaks, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.chem.spectra import (
    BinSpec,
    bin_peaks,
    ms_spec,
    nmr1h_spec,
    nmr13c_spec,
    pick_peaks,
    spec_from_dict,
)


def test_13c_is_cress_grid_with_centred_bins() -> None:
    spec = nmr13c_spec()
    assert (spec.n_bins, spec.low, spec.high, spec.width) == (4000, -50.0, 350.0, pytest.approx(0.1))
    centres = spec.centers()
    assert centres[0] == pytest.approx(-50.0) and centres[1780] == pytest.approx(128.0)
    b = bin_peaks([128.0, 128.04, 21.3, -50.05, 349.94], None, spec)
    assert b.spectrum.dtype == np.float32 and b.spectrum.shape == (4000,)
    # 128.0 and 128.04 share bin 1780 (binary: 1, not 2); 21.3 -> 713; the edges land in the end bins
    assert np.flatnonzero(b.spectrum).tolist() == [0, 713, 1780, 3999]
    assert set(b.spectrum.tolist()) == {0.0, 1.0}
    assert (b.n_peaks, b.n_binned, b.n_out_of_range, b.n_invalid) == (5, 5, 0, 0)


def test_13c_out_of_range_dropped_or_clipped_and_counted() -> None:
    spec = nmr13c_spec()
    peaks = [-50.06, 349.95, 500.0, 100.0]
    dropped = bin_peaks(peaks, None, spec)
    assert dropped.n_out_of_range == 3 and dropped.n_binned == 1
    assert np.flatnonzero(dropped.spectrum).tolist() == [1500]
    clipped = bin_peaks(peaks, None, spec, out_of_range="clip")
    assert clipped.n_out_of_range == 3 and clipped.n_binned == 4
    assert np.flatnonzero(clipped.spectrum).tolist() == [0, 1500, 3999]


def test_13c_matches_the_cress_teacher_binning_inside_the_range() -> None:
    from acml_dist.teachers.published import bin_nmr13c

    rng = np.random.default_rng(0)
    peaks = rng.uniform(-49.9, 349.8, size=400)
    # exact halves (x.x5 ppm) are rounded half-up here, half-to-even by np.round there: keep away from them
    frac = ((peaks + 50) * 10) % 1
    peaks = peaks[np.abs(frac - 0.5) > 1e-3]
    np.testing.assert_array_equal(bin_peaks(peaks, None, nmr13c_spec()).spectrum, bin_nmr13c(peaks))


def test_1h_sums_protons_and_scales_to_max_one() -> None:
    spec = nmr1h_spec()  # 1,200 bins of 0.01 ppm over [0, 12)
    b = bin_peaks([0.9, 0.9, 0.9, 7.26], None, spec)
    assert b.spectrum[90] == pytest.approx(1.0)
    assert b.spectrum[726] == pytest.approx(1 / 3)
    assert b.spectrum.sum() == pytest.approx(4 / 3)
    coarse = nmr1h_spec(n_bins=120)
    assert bin_peaks([0.95], None, coarse).spectrum.argmax() == 9
    assert bin_peaks([12.0, -0.01], None, spec).n_out_of_range == 2


def test_ms_binning_normalises_intensities_and_checks_its_grid() -> None:
    spec = ms_spec(0, 500, 1.0)
    b = bin_peaks([50.2, 50.7, 77.0, 499.99, 500.0], [10, 30, 20, 5, 99], spec)
    assert spec.n_bins == 500
    assert b.spectrum[50] == pytest.approx(1.0)  # 10 + 30 summed, the maximum
    assert b.spectrum[77] == pytest.approx(0.5)
    assert b.spectrum[499] == pytest.approx(5 / 40)
    assert b.n_out_of_range == 1
    fine = ms_spec(100, 101, 0.01)
    assert fine.n_bins == 100 and bin_peaks([100.305], [1.0], fine).spectrum.argmax() == 30
    with pytest.raises(ValueError, match="whole number"):
        ms_spec(0, 100, 0.3)
    with pytest.raises(ValueError, match="resolution"):
        ms_spec(0, 100, 0)


def test_invalid_values_are_dropped_and_counted_and_empty_input_is_zeros() -> None:
    spec = nmr1h_spec()
    b = bin_peaks([1.0, np.nan, np.inf, 2.0], [1.0, 1.0, 1.0, np.nan], spec)
    assert (b.n_invalid, b.n_binned) == (3, 1)
    empty = bin_peaks([], None, spec)
    assert empty.spectrum.shape == (1200,) and not empty.spectrum.any() and empty.n_peaks == 0
    with pytest.raises(ValueError, match="intensities"):
        bin_peaks([1.0, 2.0], [1.0], spec)


def test_binning_is_deterministic_and_order_independent() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 12, 300)
    y = rng.uniform(0, 1, 300)
    a = bin_peaks(x, y, nmr1h_spec()).spectrum
    perm = rng.permutation(300)
    b = bin_peaks(x[perm], y[perm], nmr1h_spec()).spectrum
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.tobytes() == bin_peaks(x, y, nmr1h_spec()).spectrum.tobytes()


def test_max_reduce_for_traces_and_bad_specs() -> None:
    spec = BinSpec("trace", 0.0, 10.0, 10, reduce="max", normalize="none")
    b = bin_peaks([1.1, 1.2, 1.3], [0.5, 2.0, -1.0], spec)
    assert b.spectrum[1] == pytest.approx(2.0) and b.spectrum.sum() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        BinSpec("x", 1.0, 1.0, 10)
    with pytest.raises(ValueError):
        BinSpec("x", 0.0, 1.0, 0)
    with pytest.raises(ValueError, match="unknown spectrum kind"):
        spec_from_dict("ir")
    assert spec_from_dict("nmr1h", {"n_bins": 600}).n_bins == 600
    assert spec_from_dict("ms", {"mz_max": 200, "resolution": 0.5}).n_bins == 400


def test_pick_peaks_finds_the_lines_of_a_trace() -> None:
    x = np.linspace(0, 12, 6001)
    y = 1.0 / (1 + ((x - 1.2) / 0.01) ** 2) + 0.4 / (1 + ((x - 7.3) / 0.01) ** 2) + 0.001
    pos, height = pick_peaks(x, y, rel_height=0.05)
    assert pos.tolist() == pytest.approx([1.2, 7.3], abs=0.003)
    assert height[0] > height[1]
    assert pick_peaks([], [])[0].size == 0
    assert pick_peaks([1.0, 2.0], [-1.0, -2.0])[0].size == 0
