"""Name -> lazily imported implementation, with did-you-mean errors."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Registry"]


@dataclass
class _Entry:
    name: str
    target: str  # "package.module:Attribute"
    summary: str
    extra: dict = field(default_factory=dict)


class Registry:
    """A registry mapping names to ``"module:Attribute"`` strings that are imported only when used.

    Heavy dependencies (torch, opacus, jax) therefore load on first use, and ``import scdpsynth`` stays fast.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, target: str, summary: str, **extra) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered.")
        if ":" not in target:
            raise ValueError(f"target must look like 'package.module:Attribute', got {target!r}.")
        self._entries[name] = _Entry(name, target, summary, dict(extra))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise a ValueError with suggestions."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} must be given by name (a str), got {type(name).__name__}.")
        if name in self._entries:
            return name
        close = difflib.get_close_matches(name.lower(), self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown {self.kind} {name!r}.{hint} Available: {self.names()}")

    def get(self, name: str):
        """Import and return the object registered under ``name``."""
        entry = self._entries[self.check(name)]
        module, _, attr = entry.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def info(self, name: str) -> dict:
        entry = self._entries[self.check(name)]
        return {"name": entry.name, "summary": entry.summary, **entry.extra}

    def to_frame(self) -> pd.DataFrame:
        rows = [{"name": e.name, "summary": e.summary, **e.extra} for e in self._entries.values()]
        if not rows:
            return pd.DataFrame(columns=["name", "summary"])
        return pd.DataFrame(rows).sort_values("name").reset_index(drop=True)
