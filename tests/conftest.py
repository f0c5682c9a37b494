"""Shared fixtures: real data loaded once (functools.cache) and copied per test."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import scdpsynth as sd


@functools.cache
def _kang_example():
    return sd.datasets.kang_example()


@functools.cache
def _bioc_all():
    return sd.datasets.bioc_all()


@functools.cache
def _kang_pbmc():
    return sd.datasets.kang_pbmc()


@pytest.fixture
def kang_example():
    """Embedded Kang PBMC subset: 1,556 cells x 1,267 genes, raw counts, obs cell_type/donor_id."""
    return _kang_example().copy()


@pytest.fixture
def kang_small():
    """300 cells x 200 genes of the embedded Kang data (raw counts; highest-total genes), stratified by cell type."""
    a = _kang_example()
    rng = np.random.default_rng(0)
    idx = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(a.obs["cell_type"] == c), 60, replace=False)
                for c in a.obs["cell_type"].cat.categories
            ]
        )
    )
    genes = np.argsort(-np.asarray(a.X.sum(axis=0)).ravel())[:200]
    return a[idx][:, np.sort(genes)].copy()


@pytest.fixture
def bioc_all():
    """Bulk ALL microarray: 128 samples x 12,625 probes, log2; obs BT, lineage."""
    return _bioc_all().copy()


@pytest.fixture
def bioc_all_small():
    """Bulk ALL restricted to the 200 highest-variance probes; obs 'lineage' (B/T)."""
    a = _bioc_all()
    var = np.asarray(a.X).var(axis=0)
    return a[:, np.sort(np.argsort(-var)[:200])].copy()


@pytest.fixture
def kang_pbmc():
    """Full Kang control PBMCs: 12,261 cells x 1,287 genes, 8 cell types, 8 donors (from ../shared/data)."""
    return _kang_pbmc().copy()
