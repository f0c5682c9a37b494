"""Every plot renders with the Agg backend and follows scanpy's output conventions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import scdpsynth as sd


@pytest.fixture
def pair(kang_small):
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=5.0, groupby="cell_type")
    return kang_small, syn


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_gene_histograms(pair, tmp_path):
    real, syn = pair
    genes = list(real.var_names[:3])
    fig = sd.pl.gene_histograms(real, syn, genes, return_fig=True)
    assert len([a for a in fig.axes if a.get_visible()]) == 3
    assert fig.axes[0].get_title() == genes[0]
    _, ax = plt.subplots()
    assert sd.pl.gene_histograms(real, syn, genes[0], ax=ax, show=False) is ax
    sd.pl.gene_histograms(real, syn, genes[:2], save=tmp_path / "h.png", show=False)
    assert (tmp_path / "h.png").stat().st_size > 0
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        sd.pl.gene_histograms(real, syn, ["NOT_A_GENE"])
    with pytest.raises(ValueError, match="single gene"):
        sd.pl.gene_histograms(real, syn, genes, ax=ax)


def test_real_vs_synthetic_umap(pair):
    real, syn = pair
    fig = sd.pl.real_vs_synthetic_umap(real, syn, return_fig=True)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["real", "synthetic"]
    fig = sd.pl.real_vs_synthetic_umap(real, syn, color="cell_type", return_fig=True)
    assert [a.get_title() for a in fig.axes] == ["real", "synthetic"]
    assert "X_umap" not in real.obsm and "X_umap" not in syn.obsm
    with pytest.raises(KeyError, match="donor_id"):
        sd.pl.real_vs_synthetic_umap(real, syn, color="donor_id")


@pytest.fixture(scope="module")
def bench(request):
    import numpy as np

    a = sd.datasets.bioc_all()
    a = a[:, np.sort(np.argsort(-np.asarray(a.X).var(0))[:150])].copy()
    return sd.tl.benchmark(
        a,
        methods=["ron_gauss"],
        eps_grid=[1.0, None],
        seeds=[0, 1],
        groupby="lineage",
        metrics=["ml_efficacy", "de_genes", "coexpression"],
    )


def test_privacy_utility(bench):
    fig = sd.pl.privacy_utility(bench, return_fig=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "non-private"]
    assert "real data" in [t.get_text() for t in ax.get_legend().get_texts()]
    line = ax.lines[0]
    expected = bench.query("metric == 'ml_efficacy' and variant == 'accuracy' and group == 'all'")
    assert line.get_ydata()[0] == pytest.approx(expected[expected["eps"] == 1.0]["value"].mean())
    with pytest.raises(ValueError, match="variant 'nope'"):
        sd.pl.privacy_utility(bench, variant="nope")
    with pytest.raises(ValueError, match="No rows for metric"):
        sd.pl.privacy_utility(bench, metric="lisi")


def test_de_and_coexpression_and_gfc(bench):
    fig = sd.pl.de_genes(bench, return_fig=True)
    assert [a.get_ylabel() for a in fig.axes] == ["TPR", "FPR"]
    fig = sd.pl.coexpression(bench, threshold=0.7, return_fig=True)
    assert len(fig.axes[0].patches) == 4  # correct + spurious for two eps
    one = bench[(bench["seed"] == 0) & (bench["eps"] == 1.0)].drop(columns=["method", "eps", "seed"])
    fig = sd.pl.de_genes(one, return_fig=True)
    assert fig.axes[0].get_xlabel().startswith("FPR")
    n_modules = one["variant"].str.startswith("gfc:M").sum() // 2  # two lineages per module
    assert n_modules >= 2  # the 150 most variable ALL probes form several Leiden modules
    fig = sd.pl.module_gfc(one, return_fig=True)
    assert [a.get_title() for a in fig.axes[1:3]] == ["real", "synthetic"]
    heat = fig.axes[1].images[0].get_array()
    assert heat.shape == (n_modules, 2)
    with pytest.raises(ValueError, match="one evaluation"):
        sd.pl.module_gfc(bench)
    with pytest.raises(ValueError, match="threshold"):
        sd.pl.coexpression(bench, threshold=0.3)


def test_plots_read_uns_with_clear_errors(pair):
    _real, syn = pair
    with pytest.raises(KeyError, match=r"tl.evaluate"):
        sd.pl.de_genes(syn)
    with pytest.raises(KeyError, match=r"tl.attack"):
        sd.pl.mia_roc(syn)


def test_mia_roc(pair):
    real, syn = pair
    train, holdout = sd.pp.train_holdout_split(real, stratify="cell_type", holdout_size=0.4)
    res = sd.tl.attack(train, holdout, syn, method=["dcr", "mahalanobis"])
    fig = sd.pl.mia_roc(syn, return_fig=True)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    auc = dict(zip(res["results"]["attack"], res["results"]["auroc"], strict=True))
    assert texts[:2] == [f"dcr (AUC {auc['dcr']:.2f})", f"mahalanobis (AUC {auc['mahalanobis']:.2f})"]
    assert ax.get_xscale() == "log"
    assert sd.pl.mia_roc(syn, log=False, return_fig=True).axes[0].get_xscale() == "linear"
    with pytest.raises(KeyError, match="domias"):
        sd.pl.mia_roc(syn, attacks="domias")


def test_show_defaults_like_scanpy(pair, monkeypatch):
    real, syn = pair
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    gene = real.var_names[0]
    assert sd.pl.gene_histograms(real, syn, gene) is None and shown == [True]  # own figure: shown, nothing returned
    _, ax = plt.subplots()
    assert sd.pl.gene_histograms(real, syn, gene, ax=ax) is ax and shown == [True]  # caller's axes: not shown
    assert sd.pl.gene_histograms(real, syn, gene, show=False) is not None and shown == [True]
