"""Plotting in scanpy style (``ax=``, ``show=``, ``save=``, ``return_fig=``); inputs are read from ``.uns``."""

from ._distributions import gene_histograms
from ._embedding import real_vs_synthetic_umap
from ._results import coexpression, de_genes, mia_roc, module_gfc, privacy_utility

__all__ = [
    "coexpression",
    "de_genes",
    "gene_histograms",
    "mia_roc",
    "module_gfc",
    "privacy_utility",
    "real_vs_synthetic_umap",
]
