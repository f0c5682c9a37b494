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
    "de_condition",
    "scdpsynth.metrics.de_condition:de_condition",
    "Condition contrast per class (e.g. stim vs ctrl per cell type): rank-sum and pseudobulk DE, TPR/FPR vs real",
    needs_holdout=False,
    needs_labels=True,
    needs_condition=True,
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
    "SCC: Spearman correlation of per-gene means and of gene-gene correlations, real vs synthetic, per cell type "
    "(top-100 genes by mean; not the CAMDA definition: see camda_scc)",
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
    "celltype_rf_auc",
    "scdpsynth.metrics.single_cell:celltype_rf_auc",
    "Cell-type classifier: random forest trained on synthetic, one-vs-rest ROC-AUC of cell type on the real holdout "
    "(not the CAMDA discriminator; see camda_discriminator_auc)",
    needs_holdout=True,
    needs_labels=True,
    higher_is_better=True,
    reference="train_sample",
)

# CAMDA Health Privacy Challenge metrics (tl.evaluate(..., metrics="camda")); reference = real holdout vs real
_CAMDA = [
    ("camda_scc", "Spearman correlation of real vs synthetic per-gene means (5,000 HVGs, log-normalised)", True),
    ("camda_pcc", "Pearson correlation of real vs synthetic per-gene means (5,000 HVGs, log-normalised)", True),
    ("camda_mmd", "Biased RBF-kernel MMD (gamma 1; also median heuristic) on 50 PCs, <= 20,000 cells per side", False),
    ("camda_ilisi", "scib's scaled graph iLISI, batch = real/synthetic (PCA 100, UMAP kNN k=10), 1 = mixed", True),
    ("camda_ari", "ARI of Leiden clusters: paired real vs synthetic cells, and cell type vs cluster", True),
    ("camda_emd", "Mean per-gene 1-D Wasserstein distance of log-normalised HVG expression", False),
    ("camda_corr_of_corr", "Pearson between upper triangles of real and synthetic gene-gene Spearman matrices", True),
    ("camda_discriminator_auc", "RF (1,000 trees, depth 5) ROC-AUC real vs synthetic after ComBat; 0.5 ideal", None),
]
for _name, _summary, _hib in _CAMDA:
    registry.register(
        _name,
        f"scdpsynth.metrics.camda:{_name}",
        _summary,
        needs_holdout=False,
        needs_labels=False,
        higher_is_better=_hib,
        preset="camda",
        reference="internal",  # size-matched real train vs holdout, computed by the metric itself
    )

#: Named metric sets for ``tl.evaluate(metrics=...)``. ``"all"``: every registered metric outside a named preset
#: (the general suite); ``"camda"``: the CAMDA Health Privacy Challenge set.
PRESETS = {"camda": [name for name, _, _ in _CAMDA]}

__all__ = ["PRESETS", "EvalData", "cached", "registry", "tidy"]
