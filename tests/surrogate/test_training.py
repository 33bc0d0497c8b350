"""Tiny training runs: loss goes down, seeds reproduce, checkpoints resume, CLI writes a card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bids_app.cli.train import main as train_main
from bids_app.simulate.confounds import STRATEGY_WIDTHS
from bids_app.surrogate.features import N_BANDS, Protocol
from bids_app.surrogate.registry import read_surrogate
from bids_app.surrogate.training import (
    Trainer,
    TrainingConfig,
    draw_protocol,
    noise_context,
    simulate_features,
)


def _tiny(model: str = "1p", seed: int = 0, noise_context: bool = False) -> TrainingConfig:
    return TrainingConfig(model=model, seed=seed, n_train=512, n_val=128, block=128,
                          frames_range=(150, 180), epochs_summary=3, epochs_flow=3,
                          batch=128, summary_hidden=16, flow_hidden=16, flow_layers=2,
                          noise_context=noise_context)


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.summary.state_dict().values(), *trainer.flow.state_dict().values()]


@pytest.mark.parametrize(("model", "noise_context"), [("1p", False), ("2p", False),
                                                      ("1p", True)])
def test_tiny_run_lowers_both_losses(tmp_path, model, noise_context):
    trainer = Trainer(_tiny(model, noise_context=noise_context), tmp_path)
    metrics = trainer.run()
    assert trainer.history["summary"][-1] < trainer.history["summary"][0]
    assert trainer.history["flow"][-1] < trainer.history["flow"][0]
    assert np.isfinite(metrics["flow_nll"]) and len(metrics["pit_ks"]) == int(model[0])


def test_same_seed_same_weights_and_resume_equals_uninterrupted(tmp_path):
    first = Trainer(_tiny(), tmp_path / "a")
    first.run()
    interrupted = Trainer(_tiny(), tmp_path / "b")
    interrupted._fit_summary(interrupted.data(), None)  # stop after the first network
    resumed = Trainer(_tiny(), tmp_path / "b")
    resumed.run()
    for a, b in zip(_weights(first), _weights(resumed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = Trainer(_tiny(seed=1), tmp_path / "c")
    other.run()
    assert any(not torch.equal(a, b)
               for a, b in zip(_weights(first), _weights(other), strict=True))


def test_cli_writes_a_loadable_surrogate(tmp_path):
    out = tmp_path / "out"
    code = train_main(["--model", "1p", "--out", str(out), "--seed", "3", "--n-train", "256",
                       "--n-val", "128", "--epochs", "1", "--frames-range", "150", "170",
                       "--id", "tiny-1p", "--noise-context"])
    assert code == 0
    card = json.loads((out / "tiny-1p.json").read_text())
    assert card["config"]["seed"] == 3 and len(card["sha256"]) == 64
    surrogate = read_surrogate(out / "tiny-1p.json")
    y = np.random.default_rng(0).standard_normal((4, 160)).astype(np.float32)
    s = surrogate.summarize(y, 1.0)
    assert s.shape == (4, 1)
    # The 1p flow is told the noise AR(1) coefficient, or nothing (None) about it:
    # candidates span the trained range.
    candidates = surrogate.noise_ar_candidates
    assert candidates[0] is None
    np.testing.assert_allclose(candidates[1:], np.linspace(0.0, 0.1, 5))
    white, coloured, untold = (surrogate.loglik(s, 1.0, 160, noise_ar=phi)(np.zeros((4, 1)))[0]
                               for phi in (0.0, 0.1, None))
    assert not np.allclose(white, coloured) and not np.allclose(white, untold)


def test_noise_context_marks_told_and_untold_series():
    columns = noise_context(np.array([0.05, np.nan]))
    np.testing.assert_allclose(columns, [[1.0, 1.0], [0.0, 0.0]])
    assert noise_context(0.0).tolist() == [0.0, 1.0]  # told white noise ≠ untold


def test_training_noise_colour_is_drawn_per_series_and_returned():
    config = _tiny()
    _, _, phi = simulate_features(config, 300, np.random.default_rng(5))
    assert phi.shape == (300,) and 0.0 <= phi.min() < 0.02 and 0.08 < phi.max() <= 0.1


def test_cli_usage_error_exits_64(tmp_path):
    with pytest.raises(SystemExit) as err:
        train_main(["--model", "3p", "--out", str(tmp_path)])
    assert err.value.code == 64


def test_training_draws_every_confound_strategy():
    config, rng = _tiny(), np.random.default_rng(0)
    counts = {draw_protocol(config, rng).n_regressors for _ in range(60)}
    assert counts == set(STRATEGY_WIDTHS.values())


def test_training_regressors_take_slow_power_and_are_an_input():
    """36 regressors out of 200 frames lower the slow bands' log power, and the
    features carry the count (last input) so the networks can tell."""
    config = _tiny()
    slow = slice(0, 12)  # bands below ~0.02 Hz
    feats = {}
    for k in (0, 36):
        _, x, _ = simulate_features(config, 256, np.random.default_rng(4),
                                    protocol=Protocol(1.0, 200, None, k))
        feats[k] = x
    mask = feats[0][0, N_BANDS: 2 * N_BANDS][slow] > 0.5
    assert mask.any()
    drop = feats[0][:, slow][:, mask].mean() - feats[36][:, slow][:, mask].mean()
    assert drop > 0.1
    assert feats[36][0, -1] > feats[0][0, -1]
