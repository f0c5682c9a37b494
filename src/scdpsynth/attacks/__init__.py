"""Membership-inference attacks (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry

registry = Registry("attack")

__all__ = ["registry"]
