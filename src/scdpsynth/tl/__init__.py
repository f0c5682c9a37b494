"""Tools: generate synthetic data, evaluate it and attack it (AnnData in, AnnData/DataFrames out)."""

from ._generate import generate
from ._list import list_attacks, list_methods, list_metrics

__all__ = ["generate", "list_attacks", "list_methods", "list_metrics"]
