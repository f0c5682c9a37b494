"""Every plot renders with the Agg backend and follows scanpy's output conventions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import scdpsynth as sd  # noqa: E402


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
