"""``--config-file FILE.toml``: options kept in a file, as fMRIPrep's ``--config-file``.

Keys are long option names without the dashes (``n-boot = 50``, ``participant-label =
["01", "02"]``, ``overwrite = true``; underscores work too). Each value goes through the
same argparse conversion and checks as on the command line, and becomes that option's
default, so the command line wins. A key that is not an option, or a value the option
refuses, is a usage error (exit 64) naming the file and the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import tomllib

from bids_app.errors import MissingInputError, UsageError

# Options that make no sense in a file of run options.
NOT_IN_FILE = ("help", "version", "config_file")


def file_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Accepted key → option: every long option name, with dashes or underscores."""
    keys = {}
    for action in parser._actions:
        if action.dest in NOT_IN_FILE:
            continue
        for flag in action.option_strings:
            if flag.startswith("--"):
                keys[flag[2:]] = keys[flag[2:].replace("-", "_")] = action
    return keys


def read_toml(path: Path) -> dict[str, Any]:
    """The file's table; a missing file is exit 66, malformed TOML exit 64."""
    if not path.is_file():
        raise MissingInputError(f"--config-file {path} does not exist; check the path")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--config-file {path} is not valid TOML ({err}); fix it, e.g. "
                         "n-boot = 50") from err


def _tokens(path: Path, key: str, value: Any, action: argparse.Action) -> list[str]:
    """The command-line words that set ``action`` to ``value``."""
    flag = next(f for f in action.option_strings if f.startswith("--"))
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"--config-file {path}: '{key}' must be a count (0, 1, 2)")
        return [flag] * value
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise UsageError(f"--config-file {path}: '{key}' is a switch; write {key} = true")
        return [flag] if value else []
    values = value if isinstance(value, list) else [value]
    if action.nargs not in ("+", "*") and len(values) != 1:
        raise UsageError(f"--config-file {path}: '{key}' takes one value, not a list")
    if any(isinstance(v, (dict, list)) for v in values):
        raise UsageError(f"--config-file {path}: '{key}' must be a value or a list of values")
    return [flag, *(str(v) for v in values)]


def options_from_file(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """Option ``dest`` → converted value for every key of the TOML file at ``path``."""
    keys = file_keys(parser)
    tokens, dests = [], []
    for key, value in read_toml(path).items():
        if key not in keys:
            raise UsageError(f"--config-file {path}: unknown key '{key}'; keys are long "
                             "option names of 'hemocoupling --help', e.g. n-boot = 50")
        tokens += _tokens(path, key, value, keys[key])
        dests.append(keys[key].dest)
    try:  # placeholders for the positionals: only the options are read here
        parsed = parser.parse_args(["BIDS_DIR", "OUTPUT_DIR", "participant", *tokens])
    except UsageError as err:
        raise UsageError(f"--config-file {path}: {err}") from err
    return {dest: getattr(parsed, dest) for dest in dests}
