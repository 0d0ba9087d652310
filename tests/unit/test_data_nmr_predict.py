"""csp5 predictions on a few molecules: plausible shifts, binned spectra, rejects with reasons."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.data.nmr_predict import NmrPrediction, Reject, predict_nmr

SMILES = ["c1ccccc1", "Cc1ccccc1", "CC(=O)O", "not_a_smiles((", "O", "CCO"]


@pytest.fixture(scope="module")
def predicted() -> dict:
    import torch

    torch.set_num_threads(1)
    return predict_nmr(SMILES, ("13C", "1H"))


def test_benzene_and_toluene_13c_are_where_chemistry_puts_them(predicted: dict) -> None:
    benzene, toluene = predicted["13C"][0], predicted["13C"][1]
    assert isinstance(benzene, NmrPrediction) and benzene.shifts.shape == (6,)
    assert np.all(np.abs(benzene.shifts - 128.4) < 3.0)
    assert benzene.spectrum.shape == (4000,) and benzene.spectrum.dtype == np.float32
    assert 1 <= int(benzene.spectrum.sum()) <= 2  # six equivalent carbons: one or two adjacent bins
    methyl = toluene.shifts[0]  # atom 0 of Cc1ccccc1 is the methyl carbon
    assert 0.0 < methyl < 40.0
    assert np.all((toluene.shifts[1:] > 110) & (toluene.shifts[1:] < 150))
    acid = predicted["13C"][2]
    assert acid.shifts.max() > 160  # carboxyl carbon


def test_1h_counts_protons_and_shifts_are_plausible(predicted: dict) -> None:
    benzene = predicted["1H"][0]
    assert benzene.shifts.shape == (6,) and np.all(np.abs(benzene.shifts - 7.3) < 0.6)
    toluene = predicted["1H"][1]
    assert toluene.shifts.shape == (8,)
    assert sum(1 for s in toluene.shifts if s < 3.5) == 3  # the methyl's three protons
    assert toluene.spectrum.shape == (1200,) and toluene.spectrum.max() == pytest.approx(1.0)


def test_rejects_carry_reasons_and_nuclei_are_independent(predicted: dict) -> None:
    bad13, bad1 = predicted["13C"][3], predicted["1H"][3]
    assert isinstance(bad13, Reject) and bad13.reason == "parse"
    assert isinstance(bad1, Reject) and bad1.reason == "parse"
    water13, water1 = predicted["13C"][4], predicted["1H"][4]
    assert isinstance(water13, Reject) and "carbon" in water13.reason
    assert isinstance(water1, NmrPrediction) and water1.shifts.shape == (2,)  # embedded again for 1H
    assert all(len(v) == len(SMILES) for v in predicted.values())


def test_same_smiles_same_prediction(predicted: dict) -> None:
    again = predict_nmr(["CCO"], ("13C",))["13C"][0]
    np.testing.assert_array_equal(again.shifts, predicted["13C"][5].shifts)
    assert predict_nmr([], ("13C",)) == {"13C": []}
    with pytest.raises(ValueError, match="nuclei"):
        predict_nmr(["C"], ("19F",))


def test_an_exception_inside_csp5_costs_only_its_molecule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: csp5 raises whenever a batch holds one given SMILES (the real csp5 otherwise)."""
    import csp5

    from acml_dist.data.nmr_predict import predict_nmr_isolated

    real = csp5.predict_smiles

    def flaky(smiles, **kwargs):
        if "CCCl" in smiles:
            raise RuntimeError("injected failure")
        return real(smiles, **kwargs)

    monkeypatch.setattr(csp5, "predict_smiles", flaky)
    out = predict_nmr_isolated(["CCO", "CCCl", "CC(=O)O"], ("13C", "1H"))
    for nucleus in ("13C", "1H"):
        first, bad, last = out[nucleus]
        assert isinstance(first, NmrPrediction) and isinstance(last, NmrPrediction)
        assert isinstance(bad, Reject) and bad.reason == "csp5_error: RuntimeError: injected failure"
    with pytest.raises(RuntimeError):
        predict_nmr(["CCCl"], ("13C",))
