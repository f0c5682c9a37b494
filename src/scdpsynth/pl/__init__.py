"""Plotting in scanpy style (``ax=``, ``show=``, ``save=``, ``return_fig=``); inputs are read from ``.uns``."""

__all__: list[str] = []
