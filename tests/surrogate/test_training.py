"""Tiny training runs: loss goes down, seeds reproduce, checkpoints resume, CLI writes a card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bids_app.cli.train import main as train_main
from bids_app.surrogate.registry import read_surrogate
from bids_app.surrogate.training import Trainer, TrainingConfig


def _tiny(model: str = "1p", seed: int = 0) -> TrainingConfig:
    return TrainingConfig(model=model, seed=seed, n_train=512, n_val=128, block=128,
                          frames_range=(150, 180), epochs_summary=3, epochs_flow=3,
                          batch=128, summary_hidden=16, flow_hidden=16, flow_layers=2)


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.summary.state_dict().values(), *trainer.flow.state_dict().values()]


@pytest.mark.parametrize("model", ["1p", "2p"])
def test_tiny_run_lowers_both_losses(tmp_path, model):
    trainer = Trainer(_tiny(model), tmp_path)
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
                       "--id", "tiny-1p"])
    assert code == 0
    card = json.loads((out / "tiny-1p.json").read_text())
    assert card["config"]["seed"] == 3 and len(card["sha256"]) == 64
    surrogate = read_surrogate(out / "tiny-1p.json")
    y = np.random.default_rng(0).standard_normal((4, 160)).astype(np.float32)
    assert surrogate.summarize(y, 1.0).shape == (4, 1)


def test_cli_usage_error_exits_64(tmp_path):
    with pytest.raises(SystemExit) as err:
        train_main(["--model", "3p", "--out", str(tmp_path)])
    assert err.value.code == 64
