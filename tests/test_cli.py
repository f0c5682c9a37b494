from __future__ import annotations

import anndata as ad
import pandas as pd

from scdpsynth.cli import main


def test_demo_prints_table_and_writes_csv(capsys, tmp_path):
    out = tmp_path / "demo.csv"
    assert main(["demo", "--eps", "2", "none", "--metrics", "histogram_overlap", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "histogram_overlap" in text and "real reference" in text and "Privacy spent" in text
    table = pd.read_csv(out)
    assert set(table["metric"]) == {"histogram_overlap"}
    assert sorted(table["eps"].astype(str).unique()) == ["2.0", "none"]
    assert (table.loc[table["eps"].astype(str) == "2.0", "eps_spent"] <= 2.0).all()


def test_run_and_methods(capsys, tmp_path, kang_small):
    src, dst = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    kang_small.write_h5ad(src)
    code = main(
        [
            "run",
            str(src),
            str(dst),
            "--method",
            "ron_gauss",
            "--eps",
            "1",
            "--groupby",
            "cell_type",
            "--param",
            "n_components=5",
            "--n-obs",
            "50",
        ]
    )
    assert code == 0
    syn = ad.read_h5ad(dst)
    assert syn.n_obs == 50 and syn.uns["scdpsynth"]["params"]["n_components"] == 5
    assert "seed" not in syn.uns["scdpsynth"]  # default: fresh entropy, nothing written
    again = tmp_path / "again.h5ad"
    args = ["run", str(src), str(again), "--method", "ron_gauss", "--eps", "1", "--groupby", "cell_type"]
    assert main([*args, "--n-obs", "50"]) == 0
    assert (ad.read_h5ad(again).X != syn.X).nnz > 0  # two default private runs differ
    assert main(["methods"]) == 0
    assert "ron_gauss" in capsys.readouterr().out


def test_errors_exit_2(capsys, tmp_path, kang_small):
    src = tmp_path / "in.h5ad"
    kang_small.write_h5ad(src)
    assert main(["run", str(src), str(tmp_path / "o.h5ad"), "--method", "ron_gaus", "--eps", "1"]) == 2
    assert "Did you mean 'ron_gauss'" in capsys.readouterr().err
    assert main(["run", str(src), str(tmp_path / "o.h5ad"), "--method", "ron_gauss", "--eps", "-1"]) == 2
