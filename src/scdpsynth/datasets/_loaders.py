from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

_EMBEDDED = Path(__file__).parent / "data"
_REPO_SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Directory holding the shared ``.h5ad`` files.

    Looked up in order: ``path``, the environment variable ``SCDPSYNTH_DATA_DIR``, ``../shared/data`` next to the
    project checkout, ``../shared/data`` relative to the working directory.
    """
    candidates = [path, os.environ.get("SCDPSYNTH_DATA_DIR"), _REPO_SHARED, Path.cwd() / ".." / "shared" / "data"]
    for c in candidates:
        if c is not None and Path(c).is_dir():
            return Path(c).resolve()
    raise FileNotFoundError(
        "Could not find the shared data directory. Pass path=..., or set SCDPSYNTH_DATA_DIR to the folder holding "
        "kang_se_muscat.h5ad, bioc_ALL.h5ad, ..."
    )


def _read(file: Path):
    import anndata as ad

    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist; check path= or SCDPSYNTH_DATA_DIR.")
    return ad.read_h5ad(file)


def _categorical(adata, *keys: str) -> None:
    for k in keys:
        adata.obs[k] = pd.Categorical(adata.obs[k].astype(str))


def kang_example():
    """Kang et al. 2018 PBMCs, muscat ``example_sce`` (embedded): 1,556 cells x 1,267 genes, raw UMI counts.

    ``obs``: ``cell_type`` (5 types; same as muscat's ``cluster_id``), ``donor_id`` (2), ``group_id``
    (``ctrl``/``stim``, IFN-beta stimulation) and ``sample_id``. ``X`` is a CSR matrix of integer counts.
    Source: GEO GSE96583; Crowell et al. 2020, muscat. Each call returns a fresh object.
    """
    adata = _read(_EMBEDDED / "kang_example_sce_muscat.h5ad")
    adata.obs["cell_type"] = adata.obs["cluster_id"]
    _categorical(adata, "cell_type", "cluster_id", "donor_id", "group_id", "sample_id")
    return adata


def kang_pbmc(path: str | os.PathLike | None = None):
    """Kang et al. 2018 control PBMCs: 12,261 cells x 1,287 genes, raw UMI counts, 8 cell types, 8 donors.

    ``obs``: ``cell_type``, ``donor_id`` (408-2,738 cells each). Read from ``kang_se_muscat.h5ad`` in
    :func:`data_dir`.
    """
    adata = _read(data_dir(path) / "kang_se_muscat.h5ad")
    _categorical(adata, "cell_type", "donor_id")
    return adata


def bioc_all(path: str | os.PathLike | None = None):
    """Chiaretti et al. 2004 adult ALL: 128 samples x 12,625 probes, RMA log2 microarray.

    ``obs``: ``BT`` (B/T subtype, 10 levels), ``lineage`` (``B``/``T``), ``mol.biol``, ``sex``, ``age``, ...
    """
    adata = _read(data_dir(path) / "bioc_ALL.h5ad")
    _categorical(adata, "BT", "lineage", "mol.biol")
    return adata


def geuvadis_sex(path: str | os.PathLike | None = None):
    """GEUVADIS lymphoblastoid RNA-seq: 85 samples x 10,101 genes, raw read counts; ``obs['sex']``."""
    adata = _read(data_dir(path) / "humanGender_geuvadis.h5ad")
    adata.obs["sex"] = adata.obs["group"]
    _categorical(adata, "sex", "group")
    return adata


def flu_challenge(path: str | os.PathLike | None = None):
    """H3N2 challenge (GSE30550): 252 samples x 4,147 genes, log2; ``Condition`` (sx/asx), ``Subject`` (17)."""
    adata = _read(data_dir(path) / "qusage_flu_gse30550.h5ad")
    _categorical(adata, "Condition", "Subject")
    return adata
