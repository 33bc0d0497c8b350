"""Pre-fetch every TemplateFlow file hemocoupling can ask for, for offline runs.

Why: compute nodes and containers usually have no internet, and a read-only image cannot
download at run time. The container build runs this once; cluster users run it on a login
node with ``TEMPLATEFLOW_HOME`` pointing at a shared folder (see the README, "Deployment").

Usage: ``TEMPLATEFLOW_HOME=DIR python scripts/fetch_templates.py [--prune] [--list]``

``--archive URL`` unpacks a tar of an existing TemplateFlow home instead of downloading
from TemplateFlow's S3 (builds without access to it, scripts/build_image.sh) and says
which listed files it lacked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

HEMIS = ("L", "R")

# (template, query) pairs; every query must match at least one file per hemisphere.
# fsaverage den-10k/41k have no midthickness in TemplateFlow: the app derives (white+pial)/2.
FSAVERAGE_SURFACES = [
    {"density": den, "suffix": suffix, "desc": None, "extension": ".surf.gii"}
    for den in ("10k", "41k", "164k")
    for suffix in ("white", "pial", "sphere")
] + [{"density": "164k", "suffix": "midthickness", "desc": None, "extension": ".surf.gii"}]
FSAVERAGE_SHAPES = [
    {"density": den, "suffix": suffix, "extension": ".shape.gii"}
    for den in ("10k", "41k", "164k")
    for suffix in ("sulc", "curv")
]
FSAVERAGE_ATLASES = [
    {"density": den, "atlas": atlas, "suffix": "dseg", "extension": ".label.gii"}
    for den in ("10k", "41k", "164k")
    for atlas in ("Desikan2006", "Destrieux2009", "Yeo2011")
] + [
    {"density": "164k", "atlas": "Schaefer2018", "segmentation": seg, "scale": scale,
     "suffix": "dseg", "extension": ".label.gii"}
    for seg in ("7n", "17n")
    for scale in ("100", "200", "400")
]
FSLR_FILES = [
    {"density": "32k", "suffix": suffix, "desc": None, "space": None, "extension": ".surf.gii"}
    for suffix in ("midthickness", "sphere", "inflated", "veryinflated")
] + [
    {"density": "32k", "desc": "nomedialwall", "suffix": "dparc", "extension": ".label.gii"},
    {"density": "32k", "desc": "vaavg", "suffix": "midthickness", "extension": ".shape.gii"},
]
# Look-up tables that name the atlas labels (no hemisphere entity).
FSAVERAGE_TABLES = [
    {"atlas": atlas, "suffix": "dseg", "extension": ext, "hemi": None, "density": None}
    for atlas in ("Desikan2006", "Destrieux2009", "Yeo2011", "Schaefer2018")
    for ext in (".tsv", ".json")
]

PER_HEMISPHERE = [("fsaverage", q) for q in FSAVERAGE_SURFACES + FSAVERAGE_SHAPES
                  + FSAVERAGE_ATLASES] + [("fsLR", q) for q in FSLR_FILES]


def fetch(per_hemisphere: list[tuple[str, dict]], tables: list[dict],
          download: bool = True) -> list[Path]:
    """Download (or find) each file; raise if a query matches nothing.

    With ``download=False`` only match the queries against TemplateFlow's file index
    (its bundled skeleton), so the list can be checked offline.
    Returns the absolute paths; downloaded ones are checked to be non-empty files.
    """
    from templateflow import api

    paths: list[Path] = []
    queries = [(tpl, {**q, "hemi": hemi}) for tpl, q in per_hemisphere for hemi in HEMIS]
    queries += [("fsaverage", q) for q in tables]
    for template, query in queries:
        found = api.get(template, raise_empty=True, **query) if download else \
            api.ls(template, **query)
        found = [found] if isinstance(found, (str, os.PathLike)) else found
        if not found:
            raise RuntimeError(f"TemplateFlow has no {template} file for {query}")
        for path in map(Path, found):
            if download and (not path.is_file() or path.stat().st_size == 0):
                raise RuntimeError(f"TemplateFlow did not download {path}")
            paths.append(path)
    return sorted(set(paths))


def unpack_archive(url: str, root: Path) -> None:
    """Unpack a tar of a TemplateFlow home over TemplateFlow's skeleton in ``root``.

    The skeleton (empty placeholders of every published file) comes first, so the listing
    afterwards tells the files the archive held from those it lacked.
    """
    import templateflow.api  # noqa: F401  (importing it lays the skeleton into an empty root)

    with urllib.request.urlopen(url) as response, \
            tarfile.open(fileobj=response, mode="r|*") as tar:
        # extraction filters exist from Python 3.11.4 (Debian bookworm has 3.11.2)
        tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def report_missing(paths: list[Path]) -> list[Path]:
    """Print how many listed files are missing and how to get them; return them."""
    missing = [p for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        atlases = sum("_dseg." in p.name for p in missing)
        print(f"fetch_templates: {len(missing)} of {len(paths)} listed files are not in the "
              f"archive ({atlases} parcellation files, e.g. {missing[0].name}); without them "
              "the group level skips its per-parcel tables. To get them, on a machine with "
              "internet: TEMPLATEFLOW_HOME=DIR python scripts/fetch_templates.py, then bind "
              "DIR into the container and set TEMPLATEFLOW_HOME to it (docs/deployment.md)",
              file=sys.stderr)
    return missing


def prune_placeholders(root: Path) -> int:
    """Delete TemplateFlow's empty placeholder files (everything not downloaded).

    In an offline, read-only image a placeholder would make templateflow try a download
    that can only fail; without it the app gets a clear "template not found" instead.
    """
    removed = 0
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
            removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", action="store_true",
                        help="delete the empty placeholders of files not fetched")
    parser.add_argument("--list", action="store_true", help="print the fetched paths")
    parser.add_argument("--dry-run", action="store_true",
                        help="only match the queries against TemplateFlow's index")
    parser.add_argument("--archive", metavar="URL",
                        help="unpack this tar of a TemplateFlow home instead of downloading")
    args = parser.parse_args(argv)
    if not os.environ.get("TEMPLATEFLOW_HOME"):
        parser.error("set TEMPLATEFLOW_HOME to the folder to fill")
    if args.archive:
        unpack_archive(args.archive, Path(os.environ["TEMPLATEFLOW_HOME"]))
    paths = fetch(PER_HEMISPHERE, FSAVERAGE_TABLES,
                  download=not (args.dry_run or args.archive))
    if args.archive:
        missing = report_missing(paths)
        paths = [p for p in paths if p not in missing]
    if args.list:
        print("\n".join(str(p) for p in paths))
    size = sum(p.stat().st_size for p in paths) / 2**20
    print(f"fetch_templates: {len(paths)} files, {size:.0f} MiB", file=sys.stderr)
    if args.prune and not args.dry_run:
        from templateflow.conf import TF_HOME

        print(f"fetch_templates: pruned {prune_placeholders(Path(TF_HOME))} placeholders",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
