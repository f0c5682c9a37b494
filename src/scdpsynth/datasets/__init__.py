"""Real gene-expression datasets: an embedded default and loaders for the project's shared data files.

Embedded (ships with the package)
    :func:`kang_example` -- Kang et al. 2018 PBMCs (GEO GSE96583), control + IFN-beta, 1,556 cells x 1,267 genes,
    raw UMI counts, 5 cell types, 2 donors x 2 conditions; the ``example_sce`` object of the muscat R/Bioconductor
    package (Crowell et al. 2020).

Loaded from a data directory (``path=``, ``$SCDPSYNTH_DATA_DIR`` or ``../shared/data`` of the project)
    :func:`kang_pbmc` -- Kang 2018 control PBMCs, 12,261 cells x 1,287 genes, raw counts, 8 cell types, 8 donors
    (muscat early data).
    :func:`bioc_all` -- Chiaretti et al. 2004 adult acute lymphoblastic leukaemia, 128 samples x 12,625 probes,
    RMA log2 microarray (Bioconductor ``ALL``).
    :func:`geuvadis_sex` -- GEUVADIS lymphoblastoid RNA-seq, 85 samples x 10,101 genes, raw read counts, label
    ``sex`` (DEGreport ``humanGender``).
    :func:`flu_challenge` -- H3N2 challenge study (GEO GSE30550), 252 samples x 4,147 genes, log2; 17 subjects
    (Bioconductor ``qusage``).

Simulated
    :func:`simulate_cohort` -- a multi-donor PBMC cohort of any size (per-cell-type NB fitted to Kang 2018, with
    donor effects), for scale and donor-level studies; not evidence of realism.

Please cite the original studies when using these data.
"""

from ._cohort import simulate_cohort
from ._loaders import bioc_all, data_dir, flu_challenge, geuvadis_sex, kang_example, kang_pbmc

__all__ = ["bioc_all", "data_dir", "flu_challenge", "geuvadis_sex", "kang_example", "kang_pbmc", "simulate_cohort"]
