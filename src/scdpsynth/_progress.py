"""Progress bars for long work: ``tqdm.auto`` (notebook widget or terminal), shown after a delay."""

from __future__ import annotations

from ._settings import settings

__all__ = ["progress_bar", "resolve_progress"]


def resolve_progress(progress: bool | None) -> bool:
    """A per-call ``progress=`` (``None`` defers to ``scdpsynth.settings.progress``)."""
    if progress is None:
        return settings.progress
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}.")
    return progress


def progress_bar(iterable=None, *, total: int | None = None, desc: str | None = None, progress: bool | None = None,
                 leave: bool = False, **kwargs):  # fmt: skip
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual bar with ``total``), silent when disabled.

    The bar appears only once the work has run ``settings.progress_delay`` seconds, so quick calls print nothing.
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not resolve_progress(progress), leave=leave,
                delay=settings.progress_delay, **kwargs)  # fmt: skip
