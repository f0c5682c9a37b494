"""LOGAN-style black-box attack: a classifier that tells synthetic from real reference records.

Hayes et al. (2019), "LOGAN: Membership inference attacks against generative models", PoPETs (black-box attack
with auxiliary data). The attacker trains a discriminator on synthetic records (label 1) against real reference
records (label 0). Regions where the generator puts more mass than the population -- around memorised training
records -- get a high synthetic probability, which is the membership score. The discriminator is a random forest
on the top principal components of the synthetic data, with balanced class weights and without bootstrap samples.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from .._utils import check_random_state, child_seed
from ._base import as_matrix, synthetic_pca

__all__ = ["logan"]


def logan(
    syn,
    targets,
    *,
    reference,
    n_components: int | None = 20,
    n_estimators: int = 200,
    min_samples_leaf: int = 1,
    bootstrap: bool = False,
    random_state=0,
) -> np.ndarray:
    """Probability that each target looks synthetic rather than real under a trained discriminator.

    Parameters
    ----------
    syn
        Synthetic matrix (m x d).
    targets
        Records to score (n x d).
    reference
        Real records disjoint from the training data (m_ref x d).
    n_components
        Principal components of the synthetic data used as features; ``None`` uses all genes.
    n_estimators, min_samples_leaf
        Random-forest settings.
    bootstrap
        Fit each tree on a bootstrap sample. Off by default: every tree then sees every synthetic record, so a
        target that *is* a synthetic record (a copied training record) falls into a pure synthetic leaf of every
        tree and scores 1. With bootstrap samples a copied record is out of bag for a third of the trees and an
        exact copy of 64 ALL training samples was detected with AUROC 0.91 only.
    random_state
        Seed or :class:`numpy.random.Generator` for the forest.
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    if reference is None:
        raise ValueError("logan needs reference= real data disjoint from the training data.")
    reference = as_matrix(reference, "reference", syn.shape[1])
    rng = check_random_state(random_state)
    proj = synthetic_pca(syn, n_components)
    features = np.vstack([proj(syn), proj(reference)])
    labels = np.r_[np.ones(syn.shape[0], dtype=int), np.zeros(reference.shape[0], dtype=int)]
    clf = RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf,
        class_weight="balanced",
        bootstrap=bootstrap,
        random_state=child_seed(rng),
        n_jobs=1,
    ).fit(features, labels)
    return clf.predict_proba(proj(targets))[:, 1]
