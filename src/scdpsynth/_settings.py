"""Package-wide settings (``scdpsynth.settings``), in the manner of ``scanpy.settings``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings", "settings"]


@dataclass
class Settings:
    """Global switches.

    Attributes
    ----------
    progress
        Show progress bars for long work (fits, evaluation, benchmark grids, attacks, audits). ``True`` (default)
        shows a bar only for work that runs longer than ``progress_delay`` seconds; ``False`` never shows one.
        Every call that draws a bar also takes ``progress=`` to override this per call.
    progress_delay
        Seconds before a bar appears (short work stays silent).
    """

    progress: bool = True
    progress_delay: float = 3.0

    def __setattr__(self, name, value):
        if name == "progress" and not isinstance(value, bool):
            raise TypeError(f"settings.progress must be True or False, got {value!r}.")
        if name == "progress_delay" and not (isinstance(value, int | float) and value >= 0):
            raise ValueError(f"settings.progress_delay must be a number >= 0, got {value!r}.")
        if name not in self.__dataclass_fields__:
            raise AttributeError(f"Unknown setting {name!r}; settings are {sorted(self.__dataclass_fields__)}.")
        super().__setattr__(name, value)


settings = Settings()
