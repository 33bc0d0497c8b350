"""Write ``boutiques.json`` (Boutiques schema 0.5) from the real ``hemocoupling`` parser.

Why generated: CBRAIN, brainlife and ``bosh`` only see the descriptor, and a hand-kept
copy drifts from the CLI. Inputs, value choices, defaults, list-ness and number bounds are
read from :func:`bids_app.cli.parser.build_parser`; exit codes from
:data:`bids_app.errors.EXIT_CODES` (143, SIGTERM, included); the version from the ``version``
file.

Usage: ``python scripts/make_boutiques.py [--check]`` (``--check``: exit 1 if the file
on disk differs from what would be written; CI runs it through tests/packaging).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bids_app.cli.parser import build_parser
from bids_app.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTOR = ROOT / "boutiques.json"
IMAGE = "hemocoupling/hemocoupling"
# Meta options that describe the program rather than a run of it.
META_DESTS = ("help", "version")
# Words of argparse ``dest`` names spelled out for the human-readable input names.
WORDS = {"bids": "BIDS", "dir": "directory", "fd": "FD", "id": "ID", "omp": "OMP",
         "nthreads": "threads", "nprocs": "processes", "n": "number of", "tau2": "tau²",
         "kappa": "kappa (κ)", "boot": "bootstrap resamples", "inner": "inner resamples",
         "mem": "memory", "mb": "(MB)"}

OUTPUT_FILES = [
    {"id": "derivatives_folder", "name": "Derivatives folder",
     "description": "BIDS-Derivatives dataset: per-participant maps (stat-estimate, se, "
                    "cilower, ciupper) with JSON sidecars and sub-XX.html reports; the group "
                    "level writes its maps, tables and report at the root.",
     "path-template": "[OUTPUT_DIR]", "optional": False},
    {"id": "dataset_description", "name": "Dataset description",
     "description": "dataset_description.json with GeneratedBy and DatasetType derivative.",
     "path-template": "[OUTPUT_DIR]/dataset_description.json", "optional": False},
    {"id": "log_folder", "name": "Logs",
     "description": "Log file and resolved configuration with package versions, per run.",
     "path-template": "[OUTPUT_DIR]/logs", "optional": False},
]

# One fsaverage5 run with the default double bootstrap, from the figures measured on the
# 2-core development machine (README, "Resources to request").
SUGGESTED_RESOURCES = {"cpu-cores": 2, "ram": 2, "walltime-estimate": 1800}


def _is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0


def _number_bounds(convert) -> dict | None:
    """Describe a numeric argparse ``type`` by probing it; ``None`` if it is not numeric."""
    try:
        one = convert("1")
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return None
    if not isinstance(one, (int, float)) or isinstance(one, bool):
        return None
    spec: dict = {"type": "Number", "integer": isinstance(one, int)}

    def accepts(text: str) -> bool:
        try:
            convert(text)
        except (ValueError, argparse.ArgumentTypeError):
            return False
        return True

    if accepts("0") and not accepts("-1"):
        spec["minimum"] = 0
    elif not accepts("0") and spec["integer"]:
        spec["minimum"] = 1
    elif not accepts("0"):
        spec.update({"minimum": 0, "exclusive-minimum": True})
    return spec


def _input(action: argparse.Action) -> dict:
    """One Boutiques input for one argparse action."""
    dest = action.dest
    name = " ".join(WORDS.get(word, word) for word in dest.split("_"))
    entry: dict = {"id": dest, "name": name[0].upper() + name[1:],
                   "description": (action.help or "") % {"default": action.default},
                   "value-key": f"[{dest.upper()}]",
                   "optional": bool(action.option_strings) and not action.required}
    if action.option_strings:
        longs = [s for s in action.option_strings if s.startswith("--")]
        entry["command-line-flag"] = (longs or action.option_strings)[0]
    if _is_flag(action):
        entry["type"] = "Flag"
        return entry
    if action.type is Path:
        entry["type"] = "File"
    else:
        entry.update((action.type and _number_bounds(action.type)) or {"type": "String"})
    if action.choices:
        entry["value-choices"] = list(action.choices)
    if action.nargs in ("+", "*"):
        entry["list"] = True
        if action.nargs == "+":
            entry["min-list-entries"] = 1
    if action.default is not None:
        entry["default-value"] = action.default
    return entry


def user_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's actions a user sets for a run (no --help/--version)."""
    return [a for a in parser._actions if a.dest not in META_DESTS]


def build_descriptor() -> dict:
    """The full descriptor as a dict, from the parser, exit codes and version file."""
    parser = build_parser()
    version = (ROOT / "version").read_text().strip()
    actions = user_actions(parser)
    inputs = [_input(a) for a in actions]
    groups = [
        {"id": group.title.lower().replace(" ", "_"), "name": group.title,
         "members": [a.dest for a in group._group_actions if a.dest not in META_DESTS]}
        for group in parser._action_groups
        if group.title not in ("positional arguments", "options", "optional arguments")
    ]
    return {
        "name": "hemocoupling",
        "tool-version": version,
        "schema-version": "0.5",
        "description": parser.description,
        "author": "hemocoupling developers",
        "url": "https://github.com/hemocoupling/hemocoupling",
        "command-line": " ".join(["hemocoupling"] + [i["value-key"] for i in inputs]),
        "container-image": {"type": "docker", "image": f"{IMAGE}:{version}"},
        "inputs": inputs,
        "groups": [g for g in groups if g["members"]],
        "output-files": OUTPUT_FILES,
        "error-codes": [{"code": code, "description": text}
                        for code, text in EXIT_CODES.items() if code != 0],
        "suggested-resources": SUGGESTED_RESOURCES,
        "tags": {"domain": ["neuroinformatics", "fmri", "bids-app", "surface"]},
        "tests": [{
            "name": "participant level without bootstrap on a simulated dataset",
            "invocation": {"bids_dir": "demo/bids", "output_dir": "demo/out",
                           "analysis_level": "participant", "participant_label": ["01"],
                           "bootstrap": "none"},
            "assertions": {"exit-code": 0, "output-files": [{"id": "dataset_description"}]},
        }],
    }


def render(descriptor: dict) -> str:
    """Stable JSON text (2-space indent, trailing newline)."""
    return json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--check", action="store_true",
                     help="exit 1 if boutiques.json is not what this script writes")
    args = cli.parse_args(argv)
    text = render(build_descriptor())
    if args.check:
        if not DESCRIPTOR.is_file() or DESCRIPTOR.read_text() != text:
            print("boutiques.json is out of date: run python scripts/make_boutiques.py",
                  file=sys.stderr)
            return 1
        return 0
    DESCRIPTOR.write_text(text)
    print(f"wrote {DESCRIPTOR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
