"""scdpsynth: differentially private synthetic gene-expression data for AnnData."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, pp, privacy, tl
from ._settings import settings

try:
    __version__ = version("scdpsynth")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "datasets", "pl", "pp", "privacy", "settings", "tl"]
