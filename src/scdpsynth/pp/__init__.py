"""Preprocessing of real data before generation and evaluation."""

from ._split import train_holdout_split

__all__ = ["train_holdout_split"]
