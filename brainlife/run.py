"""brainlife.io adapter: config.json → fMRIPrep-style layout → ``hemocoupling`` → brainlife outputs.

brainlife hands an app loose files (``surface-data`` left/right GIFTI or a ``cifti``
dtseries, a ``regressors`` TSV) plus metadata in ``./config.json``; hemocoupling reads
fMRIPrep derivatives. This script builds a temporary fMRIPrep-style dataset of hard links
(copies across file systems) with a sidecar holding the repetition time, runs the
participant level, and lays the results out the way brainlife datatypes expect them,
in the working directory:

- ``output/``        the full BIDS-Derivatives dataset (maps, sidecars, logs, report);
- ``surface-data/``  ``left.gii`` / ``right.gii``: every map of a hemisphere stacked as
                     named data arrays (GIFTI input);
- ``maps/``          every parameter map file and its JSON sidecar, flat;
- ``html/``          ``index.html``, the participant report;
- ``product.json``   what brainlife shows on the task page.

Usage: ``python run.py [config.json]`` (``main`` calls it). Exits with hemocoupling's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Vertices per hemisphere → space, for inputs whose metadata does not name the space.
SPACE_BY_VERTICES = {10242: "fsaverage5", 40962: "fsaverage6", 163842: "fsaverage",
                     32492: "fsLR"}
# config.json keys passed on to the CLI unchanged (None / "" leaves the app's default).
PASSTHROUGH = ("model", "confounds", "fd_threshold", "dummy_scans", "lowpass", "bootstrap",
               "n_boot", "n_inner", "block_length", "bias_correction", "random_seed", "nprocs",
               "omp_nthreads", "task_id")
LIST_OPTIONS = ("kappa", "tau2")


class ConfigError(Exception):
    """config.json lacks something this adapter needs (exit 66, like the app)."""


def _inputs_meta(config: dict) -> dict[str, Any]:
    """The merged ``meta`` of brainlife's ``_inputs`` (subject, session, space, TR...)."""
    merged: dict[str, Any] = {}
    for item in config.get("_inputs") or []:
        merged.update({k: v for k, v in (item.get("meta") or {}).items() if v is not None})
    return merged


def _label(value: Any, default: str) -> str:
    """A BIDS label (alphanumeric) from brainlife metadata."""
    text = re.sub(r"[^A-Za-z0-9]", "", str(value or "")) or default
    return text


def _given(config: dict, key: str) -> bool:
    return config.get(key) not in (None, "")


def _n_vertices(gifti: Path) -> int:
    import nibabel as nib

    return int(nib.load(gifti).darrays[0].data.shape[0])


def repetition_time(config: dict, meta: dict) -> float:
    """TR in seconds: config ``tr``, else the input's ``RepetitionTime`` metadata."""
    for value in (config.get("tr"), meta.get("RepetitionTime"), meta.get("tr")):
        if value not in (None, ""):
            tr = float(value)
            if not 0.1 <= tr <= 10:
                raise ConfigError(f"config.json: tr={tr} is not a repetition time in seconds")
            return tr
    raise ConfigError("config.json: set 'tr' (repetition time in seconds); the surface "
                      "files do not record it reliably")


def space_of(config: dict, meta: dict, left: Path | None) -> str:
    """The fMRIPrep space label of GIFTI input (``fsLR`` becomes ``fsLR_den-32k``)."""
    space = config.get("space") or meta.get("space")
    if not space and left is not None:
        space = SPACE_BY_VERTICES.get(_n_vertices(left))
    if not space:
        raise ConfigError("config.json: set 'space' (fsaverage5, fsaverage6, fsaverage, "
                          "fsnative or fsLR) for these surface files")
    return "fsLR_den-32k" if space in ("fsLR", "fsLR32k", "fsLR_den-32k") else space


def _link(target: Path, link: Path) -> None:
    """Hard link (no copy, no extra space) or, across file systems, copy ``target``.

    Not a symlink: the app records each input as a BIDS URI relative to the dataset and
    resolves symlinks to do so, which fails for targets outside the dataset.
    """
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(target.resolve(), link)
    except OSError:
        shutil.copy2(target.resolve(), link)


def build_layout(config: dict, root: Path) -> tuple[str, str | None]:
    """Write a one-run fMRIPrep-style dataset of links to the inputs under ``root``.

    Returns the subject label and the session label (or ``None``).
    """
    meta = _inputs_meta(config)
    subject = _label(meta.get("subject"), "01")
    session = _label(meta.get("session"), "") or None
    task = _label(config.get("task_id"), "rest")
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "func"
    prefix = "_".join([f"sub-{subject}", *([f"ses-{session}"] if session else []),
                       f"task-{task}"])
    tr = repetition_time(config, meta)
    sidecar = json.dumps({"RepetitionTime": tr, "TaskName": task}, indent=2)

    if _given(config, "cifti"):
        name = f"{prefix}_space-fsLR_den-91k_bold"
        _link(Path(config["cifti"]), folder / f"{name}.dtseries.nii")
        (folder / f"{name}.json").write_text(sidecar)
    elif _given(config, "left") and _given(config, "right"):
        left, right = Path(config["left"]), Path(config["right"])
        space = space_of(config, meta, left)
        for hemi, path in (("L", left), ("R", right)):
            name = f"{prefix}_hemi-{hemi}_space-{space}_bold"
            _link(path, folder / f"{name}.func.gii")
            (folder / f"{name}.json").write_text(sidecar)
        anat = folder.parent / "anat"
        for hemi, key in (("L", "surf_left"), ("R", "surf_right")):
            if _given(config, key):  # subject midthickness, needed for fsnative
                entities = "_".join(prefix.split("_")[:-1])  # no task entity on anatomy
                _link(Path(config[key]), anat / f"{entities}_hemi-{hemi}_midthickness.surf.gii")
    else:
        raise ConfigError("config.json: give 'left' and 'right' (surface-data GIFTI) or "
                          "'cifti' (dtseries)")
    if _given(config, "regressors"):
        _link(Path(config["regressors"]), folder / f"{prefix}_desc-confounds_timeseries.tsv")
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "brainlife inputs laid out for hemocoupling", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]}, indent=2))
    return subject, session


def cli_arguments(config: dict, bids: Path, output: Path, work: Path, subject: str,
                  session: str | None) -> list[str]:
    """The ``hemocoupling`` argument list for this task."""
    args = [str(bids), str(output), "participant", "--participant-label", subject,
            "-w", str(work), "--skip-bids-validation"]
    if session:
        args += ["--session-label", session]
    if not _given(config, "regressors"):
        args += ["--confounds", "none"]
    for key in PASSTHROUGH:
        if _given(config, key) and not (key == "confounds" and "--confounds" in args):
            args += [f"--{key.replace('_', '-')}", str(config[key])]
    for key in LIST_OPTIONS:
        if _given(config, key):
            values = config[key] if isinstance(config[key], list) else str(config[key]).split()
            args += [f"--{key}", *map(str, values)]
    if config.get("write_deconvolved"):
        args.append("--write-deconvolved")
    return args


def stack_hemisphere(maps: list[Path], target: Path) -> None:
    """One GIFTI holding every map of a hemisphere, each data array named ``param-X_stat-Y``."""
    import nibabel as nib

    image = nib.gifti.GiftiImage()
    for path in maps:
        name = re.search(r"(param-[A-Za-z0-9]+_stat-[A-Za-z0-9]+)", path.name)
        data = nib.load(path).darrays[0].data.astype("float32")
        image.add_gifti_data_array(nib.gifti.GiftiDataArray(
            data, intent="NIFTI_INTENT_ESTIMATE", datatype="NIFTI_TYPE_FLOAT32",
            meta={"Name": name[1] if name else path.name}))
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, target)


def collect_outputs(output: Path, subject: str, workdir: Path) -> dict:
    """Lay the derivatives out as brainlife datatypes; return the product.json content."""
    maps = sorted(p for p in (output / f"sub-{subject}").rglob("*_boldmap.*")
                  if not p.name.endswith(".json"))
    if not maps:
        raise RuntimeError(f"hemocoupling wrote no maps under {output}")
    flat = workdir / "maps"
    flat.mkdir(exist_ok=True)
    for path in maps:
        shutil.copy2(path, flat / path.name)
        sidecar = path.with_name(path.name.split(".")[0] + ".json")
        if sidecar.exists():
            shutil.copy2(sidecar, flat / sidecar.name)
    product: dict[str, Any] = {"brainlife": []}
    gifti = [p for p in maps if p.name.endswith(".func.gii")]
    if gifti:
        # Combined-over-runs maps carry no run entity; with one run there is one set.
        for hemi, name in (("L", "left.gii"), ("R", "right.gii")):
            stack_hemisphere([p for p in gifti if f"_hemi-{hemi}_" in p.name],
                             workdir / "surface-data" / name)
        space = re.search(r"_space-([A-Za-z0-9]+)", gifti[0].name)
        product["surface-data"] = {"meta": {"space": space[1] if space else None},
                                   "tags": ["hemocoupling"]}
    report = output / f"sub-{subject}.html"
    if report.exists():
        html = workdir / "html"
        html.mkdir(exist_ok=True)
        shutil.copy2(report, html / "index.html")
        figures = output / f"sub-{subject}" / "figures"
        if figures.is_dir():
            shutil.copytree(figures, html / f"sub-{subject}" / "figures", dirs_exist_ok=True)
        product["brainlife"].append({"type": "info",
                                     "msg": "hemocoupling report: html/index.html"})
    product["brainlife"].append({"type": "info", "msg": f"{len(maps)} maps written"})
    return product


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config_path = Path(argv[0] if argv else "config.json")
    workdir = Path.cwd()
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        print(f"brainlife: cannot read {config_path}: {err}", file=sys.stderr)
        return 66
    output = workdir / "output"
    scratch = Path(tempfile.mkdtemp(prefix="hemocoupling-brainlife-", dir=workdir))
    try:
        subject, session = build_layout(config, scratch / "bids")
        args = cli_arguments(config, scratch / "bids", output, scratch / "work", subject,
                             session)
        print("brainlife: hemocoupling " + " ".join(args), file=sys.stderr)
        from bids_app.cli.run import main as hemocoupling

        code = hemocoupling(args)
        if code == 0:
            product = collect_outputs(output, subject, workdir)
        else:
            product = {"brainlife": [{"type": "error",
                                      "msg": f"hemocoupling exited {code}; see output/logs"}]}
        (workdir / "product.json").write_text(json.dumps(product, indent=2))
        return code
    except ConfigError as err:
        print(f"brainlife: {err}", file=sys.stderr)
        (workdir / "product.json").write_text(json.dumps(
            {"brainlife": [{"type": "error", "msg": str(err)}]}, indent=2))
        return 66
    finally:
        if not os.environ.get("HEMOCOUPLING_KEEP_SCRATCH"):
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
