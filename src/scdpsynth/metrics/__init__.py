"""Utility, fidelity and biological-plausibility metrics (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry

registry = Registry("metric")

__all__ = ["registry"]
