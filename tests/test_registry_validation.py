from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scdpsynth import _validation as V
from scdpsynth._registry import Registry
from scdpsynth._utils import check_random_state, child_seed


def test_registry_lazy_get_and_frame():
    r = Registry("thing")
    r.register("mean", "numpy:mean", "arithmetic mean", kind="stat")
    assert r.get("mean") is np.mean
    assert r.to_frame().to_dict("records") == [{"name": "mean", "summary": "arithmetic mean", "kind": "stat"}]
    assert "mean" in r and len(r) == 1
    with pytest.raises(ValueError, match="already registered"):
        r.register("mean", "numpy:mean", "again")
    with pytest.raises(ValueError, match="module:Attribute"):
        r.register("x", "numpy.mean", "bad target")


def test_registry_did_you_mean():
    r = Registry("method")
    for n in ("privsyn", "private_pgm", "ron_gauss"):
        r.register(n, f"m:{n}", n)
    with pytest.raises(ValueError, match=r"Unknown method 'PrivSyn'\. Did you mean 'privsyn'\?") as e:
        r.check("PrivSyn")
    assert "Available: ['private_pgm', 'privsyn', 'ron_gauss']" in str(e.value)
    with pytest.raises(ValueError, match=r"Unknown method 'zzz'\. Available") as e:
        r.check("zzz")
    with pytest.raises(TypeError):
        r.check(3)


def test_empty_registry_frame():
    assert list(Registry("x").to_frame().columns) == ["name", "summary"]


@pytest.mark.parametrize(
    ("X", "expected"),
    [
        (np.array([[0, 1], [2, 3]]), True),
        (np.array([[0.0, 1.0], [2.0, 3.0]]), True),
        (np.array([[0.5, 1.0]]), False),
        (np.array([[-1, 1]]), False),
        (sparse.csr_matrix(np.array([[0, 4.0]])), True),
        (np.array([[np.nan, 1.0]]), False),
    ],
)
def test_is_counts(X, expected):
    assert V.is_counts(X) is expected


def test_check_counts_messages():
    with pytest.raises(ValueError, match="layer='counts'"):
        V.check_counts(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="negative"):
        V.check_counts(np.array([[-1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        V.check_counts(np.array([[np.nan, 1.0]]))
    V.check_counts(sparse.csr_matrix(np.array([[0, 3]])))


def test_check_categorical_drops_empty_categories():
    import anndata as ad

    a = ad.AnnData(np.zeros((4, 2)), obs=pd.DataFrame({"g": pd.Categorical(list("aabb"), categories=list("abc"))}))
    codes, cats = V.check_categorical(a, "g")
    assert list(cats) == ["a", "b"] and codes.tolist() == [0, 0, 1, 1]


def test_random_state():
    rng = np.random.default_rng(0)
    assert check_random_state(rng) is rng
    assert check_random_state(5).integers(100) == np.random.default_rng(5).integers(100)
    with pytest.raises(TypeError):
        check_random_state("seed")
    with pytest.raises(ValueError):
        check_random_state(-1)
    assert child_seed(np.random.default_rng(1)) == child_seed(np.random.default_rng(1))


def test_docs_api_page_lists_every_public_function():
    """docs/api.md must document every registered generator, metric and attack and every pl/tl/pp function."""
    from pathlib import Path

    import scdpsynth as sd
    from scdpsynth import attacks, generators, metrics

    api = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    for mod in (sd.tl, sd.pl, sd.pp):
        for name in mod.__all__:
            assert f"{mod.__name__.split('.')[-1]}.{name}" in api, name
    for reg in (generators.registry, metrics.registry, attacks.registry):
        for name in reg.names():
            target = reg._entries[name].target.replace("scdpsynth.", "").replace(":", ".")
            assert target in api, target
