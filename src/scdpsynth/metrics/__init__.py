"""Utility, fidelity and biological-plausibility metrics (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry
from ._base import EvalData, cached, tidy

registry = Registry("metric")
# reference-study suite (tl.evaluate); higher_is_better=None: see the variants in the function's docstring
registry.register(
    "ml_efficacy",
    "scdpsynth.metrics.ml_efficacy:ml_efficacy",
    "Train on synthetic, test on real holdout: logistic regression accuracy, balanced accuracy, macro-F1",
    needs_holdout=True,
    needs_labels=True,
    higher_is_better=True,
    reference="train_sample",
)
registry.register(
    "histogram_overlap",
    "scdpsynth.metrics.overlap:histogram_overlap",
    "Histogram intersection of per-gene marginals (real-range min-max scaling; 25/50/100 bins), mean over genes",
    needs_holdout=False,
    needs_labels=False,
    higher_is_better=True,
    reference="holdout_sample",
)
registry.register(
    "knn_distance",
    "scdpsynth.metrics.distance:knn_distance",
    "Mean 10-NN distance and distance to closest record of synthetic samples to real train and holdout",
    needs_holdout=True,
    needs_labels=False,
    higher_is_better=None,
    reference="internal",
)
registry.register(
    "de_genes",
    "scdpsynth.metrics.de_genes:de_genes",
    "DE-gene preservation: pairwise Wilcoxon rank-sum (up/down, p<=0.05), TPR and FPR vs real DE genes",
    needs_holdout=False,
    needs_labels=True,
    higher_is_better=None,
    reference="holdout_sample",
)
registry.register(
    "coexpression",
    "scdpsynth.metrics.coexpression:coexpression",
    "Co-expression preservation: Pearson edges (p<0.05, r>0 / r>0.7), Leiden modules, module group fold changes",
    needs_holdout=False,
    needs_labels=False,
    higher_is_better=None,
    reference="holdout_sample",
)
# single-cell metrics
registry.register(
    "scc",
    "scdpsynth.metrics.single_cell:scc",
    "SCC: Spearman correlation of per-gene means and of gene-gene correlations, real vs synthetic, per cell type",
    needs_holdout=False,
    needs_labels=False,
    higher_is_better=True,
    reference="holdout_sample",
)
registry.register(
    "lisi",
    "scdpsynth.metrics.single_cell:lisi",
    "iLISI mixing of real and synthetic cells in the real PCA space, normalised to [0, 1] (1 = perfect mixing)",
    needs_holdout=False,
    needs_labels=False,
    higher_is_better=True,
    reference="holdout_sample",
)
registry.register(
    "rf_auc",
    "scdpsynth.metrics.single_cell:rf_auc",
    "Random forest trained on synthetic, one-vs-rest ROC-AUC predicting cell type on the real holdout",
    needs_holdout=True,
    needs_labels=True,
    higher_is_better=True,
    reference="train_sample",
)

__all__ = ["EvalData", "cached", "registry", "tidy"]
