"""Tools: generate synthetic data, evaluate it, attack it and audit its privacy (AnnData in, AnnData/DataFrames out)."""

from ._attack import attack
from ._audit import audit
from ._benchmark import benchmark
from ._evaluate import evaluate
from ._generate import generate
from ._list import list_attacks, list_methods, list_metrics

__all__ = ["attack", "audit", "benchmark", "evaluate", "generate", "list_attacks", "list_methods", "list_metrics"]
