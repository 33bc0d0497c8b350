"""Test-wide settings: one BLAS/torch thread per pytest worker, and the shared data."""

from __future__ import annotations

import os
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if (SHARED_DATA / "templateflow").is_dir():
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED_DATA / "templateflow"))
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real data, template meshes); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data beside the project")
    return SHARED_DATA


@pytest.fixture
def make_raw():
    """Writes a minimal valid raw BIDS dataset (one 4D BOLD NIfTI and sidecar per subject)
    at the path given; what the BIDS validator tests start from."""
    import json

    import nibabel as nib
    import numpy as np

    def make(root: Path, subjects: tuple[str, ...] = ("01",)) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        (root / "dataset_description.json").write_text(json.dumps(
            {"Name": "raw", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
        for subject in subjects:
            func = root / f"sub-{subject}" / "func"
            func.mkdir(parents=True, exist_ok=True)
            image = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.int16), np.eye(4))
            image.header.set_xyzt_units("mm", "sec")
            image.header["pixdim"][4] = 1.0
            nib.save(image, func / f"sub-{subject}_task-rest_bold.nii.gz")
            (func / f"sub-{subject}_task-rest_bold.json").write_text(
                json.dumps({"RepetitionTime": 1.0, "TaskName": "rest"}))
        return root

    return make


@pytest.fixture(scope="session")
def dask_scheduler() -> str:
    """Address of a real Dask cluster: one single-threaded worker process (so tasks and
    their arguments go through pickling, as on a remote cluster)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address
