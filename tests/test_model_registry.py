"""A new HRF model is one registry entry: a toy one-parameter kernel (a single gamma
whose rate is the parameter), registered in ``bids_app.models.MODELS``, is simulated,
trained (``hemocoupling-train --model toy``), fitted and reported with no other change."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.bias.simulated import skip_reason
from bids_app.bootstrap.intervals import BootstrapOptions
from bids_app.cli.parser import build_parser
from bids_app.cli.train import main as train_main
from bids_app.fit import FitOptions, fit_hemisphere
from bids_app.models import DERIVED_UNITS, MODELS, DerivedMap, HRFModel, gamma_density, tail_time
from bids_app.prior import icosphere
from bids_app.simulate import NuisancePrior, hrf_kernels, sample_nuisance, simulate_bold
from bids_app.surrogate.registry import read_surrogate

TOY = HRFModel(
    name="toy",
    params=("rate",),
    lower=(0.5,),
    upper=(2.0,),
    units=("1/s",),
    descriptions=("Rate of a single gamma response.",),
    kernel=lambda t, theta: gamma_density(t[None, :], 6.0, theta[:, :1]),
    kernel_span=lambda model, tol: tail_time(((6.0, 1.0),), tol) / model.link_bounds()[0][0],
    derived_maps=(DerivedMap("rate", 0, "1/s"),),
    training_prior=dict(noise_sd=(0.05, 0.5), amplitude=(0.5, 1.0), rate=(0.003, 0.5)),
    flow_size=(2, 16),
    summary="single gamma rate",
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(MODELS, TOY.name, TOY)
    return TOY


def test_a_toy_model_is_simulated_trained_and_fitted(toy, tmp_path):
    tr, n_frames = 1.0, 160
    kernels = hrf_kernels("toy", np.array([[0.5], [2.0]]), tr)
    assert kernels.shape[1] >= 32 and np.argmax(kernels[0]) > np.argmax(kernels[1])
    assert "toy" in build_parser().format_help()
    assert DERIVED_UNITS["toy"] == {"rate": "1/s"} and "toy" in skip_reason("toy")

    code = train_main(["--model", "toy", "--out", str(tmp_path), "--seed", "0",
                       "--n-train", "256", "--n-val", "64", "--epochs", "1",
                       "--frames-range", "150", "170", "--id", "toy"])
    assert code == 0
    surrogate = read_surrogate(tmp_path / "toy.json")
    assert surrogate.model is toy and surrogate.config.flow_layers == 2

    mesh = icosphere(2, 50.0)
    rng = np.random.default_rng(0)
    theta = np.full((len(mesh[0]), 1), 1.0)
    series = simulate_bold(toy, theta, tr, n_frames,
                           sample_nuisance(NuisancePrior(**toy.training_prior), len(theta),
                                           rng), rng)
    options = FitOptions(kappas=(0.05,), tau2s=(100.0,),
                         bootstrap=BootstrapOptions(mode="none"))
    result = fit_hemisphere(series, mesh, tr, surrogate, options)
    assert list(result.maps()) == ["rate"]
    assert np.isfinite(result.maps()["rate"]).all()
    assert result.bias_correction["Method"] == "none"
