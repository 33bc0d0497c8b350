"""Tiny training runs: loss goes down, seeds reproduce, checkpoints resume, CLI writes a card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bids_app.cli.train import main as train_main
from bids_app.errors import UsageError
from bids_app.models import ONE_PARAM
from bids_app.simulate.confounds import STRATEGY_WIDTHS
from bids_app.surrogate.features import N_BANDS, Protocol
from bids_app.surrogate.likelihood import LoglikTable2, flow_loglik
from bids_app.surrogate.registry import WEIGHTS_DIR, read_surrogate
from bids_app.surrogate.training import (
    SLOW_THETA,
    Trainer,
    TrainingConfig,
    draw_protocol,
    noise_context,
    simulate_features,
    summary_loss,
    summary_targets,
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


def test_cli_writes_a_two_output_1p_surrogate_scored_exactly(tmp_path):
    """--summary-extra gives S = (E[θ̃|y], slow statistic) and a 2-D flow whose exact log q
    and θ̃-derivatives (forward-mode jets, θ̃ 1-D) equal autograd's; the workflow reads
    them from a table over (s₁, s₂, θ̃)."""
    out = tmp_path / "out"
    code = train_main(["--model", "1p", "--out", str(out), "--n-train", "256", "--n-val",
                       "128", "--epochs", "1", "--frames-range", "150", "170", "--id",
                       "tiny-2s", "--summary-extra", "time_to_peak"])
    assert code == 0
    card = json.loads((out / "tiny-2s.json").read_text())
    assert card["config"]["summary_extra"] == ["time_to_peak"]
    assert len(card["validation"]["pit_ks"]) == 2 and "loglik_table_error" not in card
    surrogate = read_surrogate(out / "tiny-2s.json")
    y = np.random.default_rng(0).standard_normal((6, 160)).astype(np.float32)
    s = surrogate.summarize(y, 1.0, 24)
    assert s.shape == (6, 2)
    theta_t = np.linspace(-2.0, 2.0, 6)[:, None]
    exact = surrogate.exact_loglik(s, 1.0, 160, 24)(theta_t)
    proto = surrogate.context_protocol(surrogate.protocol(1.0, 160, 24))
    jets = flow_loglik(surrogate.flow, s, surrogate.conditioning(proto, None), 1)(theta_t)
    for a, b in zip(jets, exact, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    table = surrogate.loglik(s, 1.0, 160, 24)(theta_t)  # the workflow's path
    assert isinstance(surrogate.table(proto), LoglikTable2)
    assert table[1].shape == (6, 1) and table[2].shape == (6, 1, 1)
    # a one-epoch flow is rough in θ̃; the table's accuracy: test_likelihood.py
    np.testing.assert_allclose(table[0], exact[0], atol=0.3)


def test_summary_extras_target_the_slow_end():
    theta_t = np.linspace(-2.5, 2.5, 201, dtype=np.float32)[:, None]
    target, labels = summary_targets(TrainingConfig(model="1p", summary_extra=(
        "time_to_peak", "slow_logit")), theta_t)
    assert labels.tolist() == [False, False, True]
    assert torch.equal(target[:, 0], torch.from_numpy(theta_t[:, 0]))
    ttp = target[:, 1].numpy()
    assert abs(ttp.mean()) < 1e-5 and abs(ttp.std() - 1) < 1e-4 and np.all(np.diff(ttp) < 0)
    slow = ONE_PARAM.to_theta(theta_t)[:, 0] < SLOW_THETA
    np.testing.assert_array_equal(target[:, 2].numpy(), slow)
    # Labels are scored by cross-entropy on the logit: a confident right logit costs ~0.
    output = target.clone()
    output[:, 2] = torch.where(target[:, 2] > 0.5, 20.0, -20.0)
    assert float(summary_loss(output, target, labels)) < 1e-8


def test_extras_are_refused_for_2p_and_absent_from_one_output_cards():
    with pytest.raises(UsageError, match="1p"):
        TrainingConfig(model="2p", summary_extra=("time_to_peak",))
    with pytest.raises(UsageError, match="slowest"):
        TrainingConfig(model="1p", summary_extra=("slowest",))
    shipped = json.loads((WEIGHTS_DIR / "hemocoupling-1p-v6.json").read_text())["config"]
    assert json.loads(json.dumps(TrainingConfig(**shipped).to_dict())) == shipped
