"""hemocoupling: vertex-wise hemodynamic coupling maps from resting-state surface fMRI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hemocoupling")
except PackageNotFoundError:  # running from a source tree that was never installed
    from pathlib import Path

    __version__ = (Path(__file__).parent.parent / "version").read_text().strip()

__all__ = ["__version__"]
