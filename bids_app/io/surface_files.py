"""GIFTI and CIFTI-2 surface files: BOLD series, meshes and scalar maps.

Conventions follow fMRIPrep: a ``.func.gii`` series holds one float32 data array per
frame with intent NIFTI_INTENT_TIME_SERIES and a ``TimeStep`` metadata entry in
milliseconds (FreeSurfer's unit); a ``.dtseries.nii`` holds a series axis in seconds and
brain models for CORTEX_LEFT / CORTEX_RIGHT (plus, in fMRIPrep's 91k layout, subcortical
voxels, which this app ignores). All arrays are vertices first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.atomic import save_image

HEMI_STRUCTURE = {"L": "CortexLeft", "R": "CortexRight"}
CIFTI_STRUCTURE = {"L": "CIFTI_STRUCTURE_CORTEX_LEFT", "R": "CIFTI_STRUCTURE_CORTEX_RIGHT"}
# TimeStep values at or above this are milliseconds (FreeSurfer), below it seconds:
# no real TR is 20 s or longer, and none is shorter than 20 ms.
_MS_THRESHOLD = 20.0


def _load(path: str | os.PathLike, kind: type) -> object:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: file not found; check the path")
    try:
        image = nib.load(path)
    except Exception as exc:
        raise InputValidationError(f"{path}: cannot be read ({exc}); re-export the file") from exc
    if not isinstance(image, kind):
        raise InputValidationError(f"{path}: not a {kind.__name__}; pass the right file type")
    return image


def _structure_meta(hemi: str | None) -> GiftiMetaData:
    return GiftiMetaData({"AnatomicalStructurePrimary": HEMI_STRUCTURE[hemi]} if hemi else {})


# --------------------------------------------------------------------------- GIFTI


def load_func_gifti(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """Load a GIFTI series (or map) as (V, T) float32 plus its TimeStep in seconds.

    Accepts one array per frame (fMRIPrep) or a single (V, T) array. TimeStep is
    returned only as a hint (None when absent or 0): callers take the repetition time
    from the JSON sidecar.
    """
    image = _load(path, GiftiImage)
    arrays = image.darrays
    if not arrays:
        raise InputValidationError(f"{path}: GIFTI has no data arrays; re-export the file")
    try:
        data = np.column_stack([np.asarray(a.data, dtype=np.float32) for a in arrays])
    except ValueError as exc:
        raise InputValidationError(f"{path}: data arrays differ in length; "
                                   "re-export the file") from exc
    if data.ndim != 2:
        raise InputValidationError(f"{path}: expected vertex-by-frame data, got {data.shape}")
    return data, _timestep_seconds(arrays[0].meta)


def _timestep_seconds(meta: GiftiMetaData) -> float | None:
    try:
        value = float(meta.get("TimeStep", "nan"))
    except ValueError:
        return None
    if not np.isfinite(value) or value <= 0:
        return None
    return value / 1000.0 if value >= _MS_THRESHOLD else value


def save_func_gifti(path: str | os.PathLike, data: np.ndarray, tr: float,
                    hemi: str | None = None) -> Path:
    """Atomically write a (V, T) series, one float32 TIME_SERIES array per frame.

    ``tr`` is in seconds (stored as TimeStep in ms); ``hemi`` ("L"/"R") sets
    AnatomicalStructurePrimary so viewers place the data.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    step = {"TimeStep": f"{1000.0 * tr:.6f}"}
    arrays = [GiftiDataArray(np.ascontiguousarray(data[:, t]),
                             intent="NIFTI_INTENT_TIME_SERIES", datatype="NIFTI_TYPE_FLOAT32",
                             meta=GiftiMetaData(step))
              for t in range(data.shape[1])]
    return save_image(path, GiftiImage(darrays=arrays, meta=_structure_meta(hemi)))


def save_scalar_gifti(path: str | os.PathLike, data: np.ndarray,
                      names: Sequence[str] | None = None, hemi: str | None = None) -> Path:
    """Atomically write maps (V,) or (V, K) as K float32 arrays (intent NONE, named)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    names = list(names) if names is not None else [f"map{k}" for k in range(data.shape[1])]
    if len(names) != data.shape[1]:
        raise ValueError(f"{len(names)} names for {data.shape[1]} maps")
    arrays = [GiftiDataArray(np.ascontiguousarray(data[:, k]), intent="NIFTI_INTENT_NONE",
                             datatype="NIFTI_TYPE_FLOAT32", meta=GiftiMetaData({"Name": name}))
              for k, name in enumerate(names)]
    return save_image(path, GiftiImage(darrays=arrays, meta=_structure_meta(hemi)))


def load_surface(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a ``.surf.gii`` mesh: vertices (V, 3) float64 in mm and faces (F, 3) int64."""
    image = _load(path, GiftiImage)
    points = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")
    triangles = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")
    if len(points) != 1 or len(triangles) != 1:
        raise InputValidationError(f"{path}: not a surface mesh (needs one POINTSET and one "
                                   "TRIANGLE array); pass a .surf.gii file")
    vertices = np.asarray(points[0].data, dtype=np.float64)
    faces = np.asarray(triangles[0].data, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputValidationError(f"{path}: mesh arrays have shapes {vertices.shape}, "
                                   f"{faces.shape}; expected (V, 3) and (F, 3)")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputValidationError(f"{path}: faces index missing vertices; re-export the mesh")
    return vertices, faces


def save_surface(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
                 hemi: str | None = None, geometric_type: str = "Anatomical") -> Path:
    """Atomically write a mesh (vertices in mm) as a ``.surf.gii``."""
    pointset_meta = {"GeometricType": geometric_type}
    if hemi:
        pointset_meta["AnatomicalStructurePrimary"] = HEMI_STRUCTURE[hemi]
    arrays = [
        GiftiDataArray(np.asarray(vertices, dtype=np.float32), intent="NIFTI_INTENT_POINTSET",
                       datatype="NIFTI_TYPE_FLOAT32", meta=GiftiMetaData(pointset_meta)),
        GiftiDataArray(np.asarray(faces, dtype=np.int32), intent="NIFTI_INTENT_TRIANGLE",
                       datatype="NIFTI_TYPE_INT32"),
    ]
    return save_image(path, GiftiImage(darrays=arrays, meta=_structure_meta(hemi)))


# --------------------------------------------------------------------------- CIFTI


@dataclass(frozen=True)
class SurfaceBlock:
    """Data on a subset of one hemisphere's mesh vertices.

    Attributes
    ----------
    data : array (n, T)
        Rows follow ``vertices``.
    vertices : array (n,) int
        Indices into the full surface mesh.
    n_vertices : int
        Vertex count of the full mesh (e.g. 32,492 for fsLR 32k).
    """

    data: np.ndarray
    vertices: np.ndarray
    n_vertices: int

    def to_full(self, fill: float = np.nan) -> np.ndarray:
        """(n_vertices, T) array with ``fill`` at vertices not in the block."""
        full = np.full((self.n_vertices, self.data.shape[1]), fill, dtype=self.data.dtype)
        full[self.vertices] = self.data
        return full

    @classmethod
    def from_full(cls, full: np.ndarray, keep: np.ndarray | None = None) -> SurfaceBlock:
        """Keep the rows of a (V, T) array where ``keep`` (default: all finite) is true."""
        full = np.asarray(full)
        if full.ndim == 1:
            full = full[:, None]
        if keep is None:
            keep = np.isfinite(full).all(axis=1)
        vertices = np.flatnonzero(keep)
        return cls(full[vertices], vertices, full.shape[0])


@dataclass(frozen=True)
class CiftiSeries:
    """Cortical part of a dense CIFTI series: one block per hemisphere ("L", "R")."""

    cortex: dict[str, SurfaceBlock]
    step_s: float | None


def load_cifti_series(path: str | os.PathLike) -> CiftiSeries:
    """Load the left/right cortex of a ``.dtseries.nii``; subcortical models are skipped.

    Returns blocks of shape (n_grayordinates, T) float32 with their vertex indices and
    the surface vertex count, and the series step in seconds (None if not in seconds).
    """
    image = _load(path, cifti2.Cifti2Image)
    try:
        series, models = (image.header.get_axis(i) for i in range(2))
    except Exception as exc:
        raise InputValidationError(f"{path}: unreadable CIFTI axes ({exc})") from exc
    if not isinstance(series, cifti2.SeriesAxis) or not isinstance(models, cifti2.BrainModelAxis):
        raise InputValidationError(f"{path}: not a dense series (time × brain models); "
                                   "pass a .dtseries.nii")
    data = np.asarray(image.dataobj, dtype=np.float32)
    cortex = _cortex_blocks(data, models)
    if not cortex:
        raise InputValidationError(f"{path}: no CORTEX_LEFT/RIGHT brain models; "
                                   "pass a surface (fsLR) CIFTI file")
    step = float(series.step) if series.unit == "SECOND" else None
    return CiftiSeries(cortex, step)


def _cortex_blocks(data: np.ndarray, models: cifti2.BrainModelAxis) -> dict[str, SurfaceBlock]:
    """Split (rows, grayordinates) CIFTI data into per-hemisphere cortex blocks."""
    by_structure = {name: (rows, model) for name, rows, model in models.iter_structures()}
    cortex = {}
    for hemi, structure in CIFTI_STRUCTURE.items():
        if structure in by_structure:
            rows, model = by_structure[structure]
            cortex[hemi] = SurfaceBlock(np.ascontiguousarray(data[:, rows].T),
                                        np.asarray(model.vertex, dtype=np.int64),
                                        int(model.nvertices[structure]))
    return cortex


def _cortex_axis(blocks: dict[str, SurfaceBlock]) -> cifti2.BrainModelAxis:
    axes = [cifti2.BrainModelAxis.from_surface(block.vertices, block.n_vertices,
                                               CIFTI_STRUCTURE[hemi])
            for hemi, block in sorted(blocks.items())]
    axis = axes[0]
    for extra in axes[1:]:
        axis = axis + extra
    return axis


def _stacked(blocks: dict[str, SurfaceBlock]) -> np.ndarray:
    return np.concatenate([np.asarray(b.data, dtype=np.float32)
                           for _, b in sorted(blocks.items())], axis=0)


def save_cifti_series(path: str | os.PathLike, cortex: dict[str, SurfaceBlock],
                      tr: float) -> Path:
    """Atomically write a cortex-only ``.dtseries.nii`` (series step ``tr`` in s)."""
    data = _stacked(cortex)
    series = cifti2.SeriesAxis(start=0.0, step=float(tr), size=data.shape[1], unit="SECOND")
    image = cifti2.Cifti2Image(data.T, header=(series, _cortex_axis(cortex)))
    image.nifti_header.set_intent("ConnDenseSeries")
    return save_image(path, image)


def save_cifti_scalars(path: str | os.PathLike, cortex: dict[str, SurfaceBlock],
                       names: Sequence[str]) -> Path:
    """Atomically write cortex maps as a ``.dscalar.nii``: block data (n, K), K names.

    Vertices absent from a block (medial wall, not estimated) are absent from the file.
    """
    data = _stacked(cortex)
    names = list(names)
    if len(names) != data.shape[1]:
        raise ValueError(f"{len(names)} names for {data.shape[1]} maps")
    image = cifti2.Cifti2Image(data.T, header=(cifti2.ScalarAxis(names), _cortex_axis(cortex)))
    image.nifti_header.set_intent("ConnDenseScalar")
    return save_image(path, image)


def load_cifti_scalars(path: str | os.PathLike) -> tuple[dict[str, SurfaceBlock], list[str]]:
    """Load cortex maps and their names from a ``.dscalar.nii`` (inverse of the saver)."""
    image = _load(path, cifti2.Cifti2Image)
    scalars, models = (image.header.get_axis(i) for i in range(2))
    if not isinstance(scalars, cifti2.ScalarAxis):
        raise InputValidationError(f"{path}: not a dense scalar file; pass a .dscalar.nii")
    data = np.asarray(image.dataobj, dtype=np.float32)
    return _cortex_blocks(data, models), list(scalars.name)
