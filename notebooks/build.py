"""Write and execute the tutorial notebooks (committed with outputs): ``python notebooks/build.py [name ...]``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbformat.v4.new_code_cell(text.strip())


def setup(numpy: bool = True):
    """The first code cell: imports and display settings."""
    return code(
        f"""
import warnings

{"import numpy as np" + chr(10) if numpy else ""}import pandas as pd
import scanpy as sc

import scdpsynth as sd

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*Transforming to str index.*")
warnings.filterwarnings("ignore", message="IProgress not found")
sc.settings.set_figure_params(dpi=80, frameon=False)
pd.set_option("display.precision", 3)
"""
    )


NOTEBOOKS = {
    "quickstart": [
        md(
            """
# Quickstart: DP synthetic single-cell counts on the embedded Kang PBMC data

This notebook generates differentially private (DP) synthetic data from the PBMC data embedded in the package
(Kang et al. 2018, muscat's `example_sce`: 1,556 cells, 1,267 genes, raw UMI counts, 5 cell types), checks what the
privacy guarantee covers, evaluates the synthetic cells against held-out real cells and attacks them.
"""
        ),
        setup(numpy=False),
        code(
            """
adata = sd.datasets.kang_example()
adata
"""
        ),
        md("The generators available, with the kind of data they take and the privacy units they can protect:"),
        code("sd.tl.list_methods()"),
        md(
            """
## Split, then generate

The generator sees only the training cells; the holdout is what the evaluation and the attacks compare against.
`copula` is a scDesign2-style Gaussian copula per cell type with per-gene Poisson / NB / ZINB marginals: it keeps
counts as integer counts.
"""
        ),
        code(
            """
train, holdout = sd.pp.train_holdout_split(adata, holdout_size=0.25, stratify="cell_type", random_state=0)
syn = sd.tl.generate(train, "copula", eps=10, groupby="cell_type")  # fresh, secret randomness (no seed)
syn
"""
        ),
        md(
            """
Everything about the privacy guarantee is in `syn.uns["scdpsynth"]["privacy"]`: the requested `eps`/`delta`, what
the ledger says was spent, the neighbouring relation, the privacy unit and the *scope*: what is treated as public.
With default arguments that is only the gene names, the label set and the hyper-parameters; even the number of
synthetic cells per type comes from DP counts. No seed is written: a private fit draws fresh OS entropy.
"""
        ),
        code(
            """
privacy = syn.uns["scdpsynth"]["privacy"]
{k: privacy[k] for k in ("eps", "delta", "eps_spent", "accountant", "neighbouring", "unit", "delta_source")}
"""
        ),
        code("list(privacy['scope'])"),
        md("The ledger: every noisy release, with the sensitivity and the noise actually drawn, and its budget share."),
        code('pd.DataFrame({k: privacy["ledger"][k] for k in ("release", "sensitivity", "noise", "share")})'),
        md("## Evaluate"),
        code(
            """
result = sd.tl.evaluate(train, syn, holdout=holdout)
result[result["group"] == "all"].drop(columns="group")
"""
        ),
        code(
            """
genes = ["ISG15", "CD74", "LYZ", "S100A8", "GNLY", "MS4A1", "NKG7", "CD3D"]
sd.pl.gene_histograms(train, syn, genes)
"""
        ),
        code('sd.pl.real_vs_synthetic_umap(train, syn, color="cell_type")'),
        md(
            """
## Do the synthetic cells mix with the real ones?

A joint UMAP of real and synthetic cells, coloured by origin, and the CAMDA challenge's iLISI (scib's scaled graph
iLISI with batch = real/synthetic; 1 = perfectly mixed, 0 = two islands), next to the same score for the real
holdout. Privacy has a price that depends on the data size: every per-cell-type statistic is a sum over that type's
cells plus noise of a fixed size, so with ~230 training cells per type (this small example) the noise at eps=10
swamps the gene means and the synthetic cells form their own islands. The non-private fit of the same model mixes
with the real cells; on the 12k-cell Kang data (`sd.datasets.kang_pbmc()`, ~1,200 cells per type) eps=10 reaches an
iLISI of about 0.70 (`benchmarks/bench_sc_realism.py`).
"""
        ),
        code(
            """
syn_np = sd.tl.generate(train, "copula", eps=None, groupby="cell_type")  # non-private: the model's ceiling
mixing = pd.concat(
    {
        name: sd.tl.evaluate(train, s, holdout=holdout, metrics=["camda_ilisi", "camda_scc"], copy=True)
        .uns["scdpsynth_eval"][["metric", "value", "reference"]]
        .set_index("metric")
        for name, s in (("eps=10", syn), ("non-private", syn_np))
    },
    axis=1,
)
mixing
"""
        ),
        code("sd.pl.real_vs_synthetic_umap(train, syn_np)"),
        code("sd.pl.real_vs_synthetic_umap(train, syn)"),
        md(
            """
## Stimulated vs control

The Kang cells come from a stimulated-vs-control design (`group_id`: ctrl / IFN-beta stim). Generating per
(cell type, condition) keeps the stimulation response; `de_condition` tests stim vs ctrl within each cell type in
the real and the synthetic cells (Wilcoxon rank sums, BH) and reports the TPR / FPR of the synthetic DE genes
against the real ones (pseudobulk variants need at least 3 donors per condition; this example has 2).
"""
        ),
        code(
            """
syn_stim = sd.tl.generate(train, "copula", eps=None, groupby=["cell_type", "group_id"])
de = sd.tl.evaluate(train, syn_stim, holdout=holdout, metrics=["de_condition"], groupby="cell_type",
                    condition="group_id", copy=True).uns["scdpsynth_eval"]
de[de["group"] == "all"][["variant", "value", "reference"]]
"""
        ),
        code('sd.pl.real_vs_synthetic_umap(train, syn_stim, color="group_id")'),
        code("sd.pl.de_genes(syn)"),
        code("sd.pl.coexpression(syn, threshold=0.7)"),
        code("sd.pl.module_gfc(syn)"),
        md(
            """
## Attack

Membership inference: can an attacker holding the synthetic data tell training cells (members) from held-out
cells (non-members)? AUROC 0.5 is a random guess; the TPR at low FPR matters most.
"""
        ),
        code(
            """
attack = sd.tl.attack(train, holdout, syn, method=["dcr", "dcr_calibrated", "domias", "mahalanobis"])
attack["results"]
"""
        ),
        code("sd.pl.mia_roc(syn)"),
        md("## Compare with RON-Gauss on the same split"),
        code(
            """
syn_rg = sd.tl.generate(train, "ron_gauss", eps=10, groupby="cell_type")
shared = ["ml_efficacy", "histogram_overlap", "de_genes", "scc", "celltype_rf_auc"]
rg = sd.tl.evaluate(train, syn_rg, holdout=holdout, metrics=shared)
both = pd.concat({"copula": result[result["metric"].isin(shared)], "ron_gauss": rg}, names=["method"])
both.query("group == 'all'").pivot_table(index=["metric", "variant"], columns="method", values=["value", "reference"])
"""
        ),
    ],
    "bulk_privacy_utility": [
        md(
            """
# Privacy-utility trade-off on bulk microarray data (ALL)

The adult ALL microarray data (Chiaretti et al. 2004; 128 samples, RMA log2) restricted to the 958 most variable
probes, with the B/T lineage as the label. Every generator is fitted at several privacy budgets and seeds on a
training split and evaluated against it and a real holdout with the reference study's metric suite.
"""
        ),
        setup(),
        code(
            """
adata = sd.datasets.bioc_all()
top = np.sort(np.argsort(-np.asarray(adata.X).var(axis=0))[:958])
adata = adata[:, top].copy()
adata.obs["lineage"].value_counts()
"""
        ),
        code(
            """
methods = ["ron_gauss", "privsyn", "private_pgm", "dp_vae", "dp_gan"]
results = sd.tl.benchmark(
    adata,
    methods=methods,
    eps_grid=[1, 10, 100, None],
    seeds=[0, 1],
    groupby="lineage",
    metrics=["ml_efficacy", "histogram_overlap", "knn_distance", "de_genes", "coexpression"],
)
results.head()
"""
        ),
        md("Mean over seeds of the headline scores (`eps` NaN = non-private):"),
        code(
            """
keys = [
    "ml_efficacy:accuracy",
    "histogram_overlap:bins=50",
    "de_genes:tpr",
    "de_genes:fpr",
    "coexpression:gfc_pearson",
    "knn_distance:dcr_to_train",
]
summary = results[results["group"] == "all"].assign(
    score=lambda d: d["metric"] + ":" + d["variant"], eps=lambda d: d["eps"].fillna(np.inf)
)
summary[summary["score"].isin(keys)].pivot_table(index=["method", "eps"], columns="score", values="value")[keys]
"""
        ),
        code('sd.pl.privacy_utility(results, metric="ml_efficacy", variant="accuracy")'),
        code('sd.pl.privacy_utility(results, metric="histogram_overlap", variant="bins=50")'),
        code("sd.pl.de_genes(results)"),
        code("sd.pl.coexpression(results[results['seed'] == 0], threshold=0.7)"),
        md("Every run stayed within its budget:"),
        code(
            """
results.assign(eps=results["eps"].fillna(np.inf)).groupby(["method", "eps"])["eps_spent"].max().unstack()
"""
        ),
    ],
    "donor_attack_study": [
        md(
            """
# Donor-level privacy and membership inference on the Kang PBMCs

Single-cell data are collected per donor, so the unit to protect is the donor, not the cell. Here the count
generators bound each donor's contribution (`unit="donor"`: cells per donor capped, per-cell clipping, and each
release adds one mean per donor and cell type), and the
attacks are scored per donor: donors whose cells trained the generator are members, held-out donors are not.
Data: Kang et al. 2018 control PBMCs (12,261 cells, 8 cell types, 8 donors; read from `../shared/data`).
"""
        ),
        setup(),
        code(
            """
adata = sd.datasets.kang_pbmc()
adata.obs.groupby(["donor_id"], observed=True).size().rename("cells").to_frame().T
"""
        ),
        code(
            """
train, holdout = sd.pp.train_holdout_split(adata, donor_key="donor_id", holdout_size=0.5, random_state=0)
print("member donors:", sorted(train.obs["donor_id"].unique()))
print("non-member donors:", sorted(holdout.obs["donor_id"].unique()))
"""
        ),
        code(
            """
runs = {}
for eps in [1, 10, None]:
    for unit in ["donor", "sample"]:
        if eps is None and unit == "sample":
            continue
        syn = sd.tl.generate(
            train, "copula", eps=eps, groupby="cell_type", donor_key="donor_id" if unit == "donor" else None,
            unit=unit,
        )
        runs[(eps, unit)] = syn
{k: (v.uns["scdpsynth"]["privacy"]["eps_spent"], v.uns["scdpsynth"]["privacy"]["unit"]) for k, v in runs.items()}
"""
        ),
        md("Cell-level attacks, then the same scores aggregated per donor (mean cell score per donor):"),
        code(
            """
tables = []
for (eps, unit), syn in runs.items():
    for level in ["sample", "donor"]:
        res = sd.tl.attack(
            train, holdout, syn, method=["dcr", "domias", "mahalanobis"], unit=level, donor_key="donor_id",
            random_state=0, progress=False,
        )
        tables.append(res["results"].assign(eps="none" if eps is None else eps, dp_unit=unit))
attacks = pd.concat(tables, ignore_index=True)
attacks.pivot_table(index=["eps", "dp_unit", "unit"], columns="attack", values="auroc")
"""
        ),
        code("sd.pl.mia_roc(runs[(None, 'donor')], log=False)"),
        md(
            """
With only a handful of donors per side, donor-level AUROC is coarse: it can only take a few values. The empirical
audit below gives a statistically sound statement instead.

## Empirical audit

`sd.tl.audit` runs `sd.tl.generate` end to end many times on neighbouring data sets (with and without a canary
record), with fresh randomness per fit, attacks every output (the canary's distance to the synthetic rows, the shift of
the synthetic mean towards it, and the output's size, dtype and metadata) and turns the attacks' error rates into a
Clopper-Pearson lower bound on eps (Bonferroni over the attacks). A correct DP generator must give a bound below its
claimed eps; a broken one (here: no noise) exceeds it. With 200 trials per arm (100 counted after choosing the
thresholds), three attacks and 95% confidence the largest bound an audit can show is about 3.0, so the audit is run at
claimed eps 1 and 2.
"""
        ),
        code(
            """
from scdpsynth.generators import registry
from scdpsynth.generators.ron_gauss import RONGauss


class NoiselessRONGauss(RONGauss):
    \"\"\"A deliberately broken RON-Gauss: claims its eps but fits without any noise.\"\"\"

    def fit(self, X, y, *, n_classes, donors=None):
        claimed, self.budget = self.budget, sd.privacy.Budget(None)
        super().fit(X, y, n_classes=n_classes, donors=donors)
        self.budget = claimed
        return self


registry.register("noiseless_ron_gauss", "__main__:NoiselessRONGauss", "broken: no noise")
bulk = sd.datasets.bioc_all()
bulk = bulk[:60, np.sort(np.argsort(-np.asarray(bulk.X).var(axis=0))[:20])].copy()
rows = []
for name in ["ron_gauss", "noiseless_ron_gauss"]:
    for eps in [1, 2]:
        res = sd.tl.audit(bulk, name, eps=eps, n_trials=200, n_obs=3000, random_state=0, progress=False)
        rows.append({"generator": name, "eps_claimed": eps, "eps_lower_bound": res.eps_lb, "attack": res.attack})
pd.DataFrame(rows)
"""
        ),
    ],
}


def build(name: str, timeout: int = 1800) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = HERE / f"{name}.ipynb"
    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)
    if shutil.which("ruff"):  # keep committed notebooks ruff-formatted (changes sources only, not outputs)
        subprocess.run(["ruff", "format", "-q", str(path)], check=False)
    print(f"{path}: executed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    for name in sys.argv[1:] or list(NOTEBOOKS):
        build(name)
