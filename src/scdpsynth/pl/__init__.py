"""Plotting in scanpy style (``ax=``, ``show=``, ``save=``, ``return_fig=``); inputs are read from ``.uns``."""

from ._distributions import gene_histograms
from ._embedding import real_vs_synthetic_umap

__all__ = ["gene_histograms", "real_vs_synthetic_umap"]
