"""The Boutiques descriptor describes the real CLI, validates, and simulates runnable commands."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bids_app.cli.parser import build_parser
from bids_app.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "boutiques.json"
BOSH = Path(sys.executable).parent / "bosh"
META = {"help", "version"}


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


def cli_options() -> dict[str, tuple[str, ...]]:
    """dest → option strings (empty for positionals) of every user-facing CLI argument."""
    return {a.dest: tuple(a.option_strings) for a in build_parser()._actions
            if a.dest not in META}


def test_every_cli_option_is_in_the_descriptor_and_back(descriptor):
    inputs = {i["id"]: i for i in descriptor["inputs"]}
    options = cli_options()
    assert sorted(set(options) - set(inputs)) == [], "CLI options missing from boutiques.json"
    assert sorted(set(inputs) - set(options)) == [], "boutiques.json inputs the CLI lacks"
    for dest, strings in options.items():
        flag = inputs[dest].get("command-line-flag")
        assert (flag in strings) if strings else flag is None, dest
        assert f"[{dest.upper()}]" in descriptor["command-line"]


def test_choices_defaults_and_flags_match_the_parser(descriptor):
    inputs = {i["id"]: i for i in descriptor["inputs"]}
    for action in build_parser()._actions:
        if action.dest in META:
            continue
        entry = inputs[action.dest]
        assert (entry["type"] == "Flag") == (action.nargs == 0), action.dest
        assert entry.get("value-choices") == (list(action.choices) if action.choices else None)
        if action.nargs != 0:
            assert entry.get("default-value") == action.default, action.dest
        assert entry.get("list", False) == (action.nargs in ("+", "*")), action.dest


def test_error_codes_are_the_documented_exit_codes(descriptor):
    codes = {e["code"]: e["description"] for e in descriptor["error-codes"]}
    assert codes == {c: d for c, d in EXIT_CODES.items() if c != 0}


def test_descriptor_is_what_the_generator_writes():
    done = subprocess.run([sys.executable, ROOT / "scripts" / "make_boutiques.py", "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bosh_validate():
    done = subprocess.run([BOSH, "validate", DESCRIPTOR], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


@pytest.mark.parametrize("invocation", [
    {"bids_dir": "/data/bids", "output_dir": "/data/out", "analysis_level": "participant",
     "participant_label": ["01", "02"], "bootstrap": "single", "n_boot": 20,
     "kappa": [0.001, 0.01], "fd_threshold": 0.5, "skip_bids_validation": True,
     "verbose": True},
    {"bids_dir": "/data/bids", "output_dir": "/data/out", "analysis_level": "group"},
], ids=["participant", "group"])
def test_bosh_simulate_gives_a_command_the_cli_parses(invocation, tmp_path):
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invocation))
    done = subprocess.run([BOSH, "exec", "simulate", DESCRIPTOR, "-i", path],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    command = shlex.split(done.stdout.split("Generated Command:")[1].strip().splitlines()[0])
    assert command[0] == "hemocoupling"
    args = build_parser().parse_args(command[1:])
    for key, value in invocation.items():
        parsed = getattr(args, key)
        if key == "verbose":
            assert parsed == 1
        elif isinstance(parsed, Path):
            assert parsed == Path(value)
        else:
            assert parsed == value, key
