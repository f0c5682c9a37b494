"""Synthetic-data generators (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry
from ._base import BaseGenerator

registry = Registry("method")
registry.register(
    "ron_gauss",
    "scdpsynth.generators.ron_gauss:RONGauss",
    "RON-Gauss: random orthonormal projection + DP Gaussian per class (Chanyaswad et al. 2019)",
    data="continuous",
    units="sample",
    private="yes",
)
registry.register(
    "private_pgm",
    "scdpsynth.generators.private_pgm:PrivatePGM",
    "Private-PGM: noisy quantile-bin marginals (gene x label) + graphical-model estimation (McKenna et al. 2019)",
    data="continuous",
    units="sample",
    private="yes",
)
registry.register(
    "privsyn",
    "scdpsynth.generators.privsyn:PrivSyn",
    "PrivSyn: noisy quantile-bin marginals, consistency + GUM synthesis (Zhang et al. 2021)",
    data="continuous",
    units="sample",
    private="yes",
)
registry.register(
    "mst",
    "scdpsynth.generators.mst:MSTGenerator",
    "MST-style: DP maximum spanning tree of gene-gene scores, label-conditioned tree marginals, ancestral sampling",
    data="continuous",
    units="sample",
)
registry.register(
    "copula",
    "scdpsynth.generators.copula:CopulaGenerator",
    "scDesign2-style Gaussian copula per cell type with Poisson/NB/ZINB count marginals; DP moments + copula",
    data="counts",
    units="sample,donor",
    private="yes",
)
registry.register(
    "vine_nmf",
    "scdpsynth.generators.vine_nmf:VineNMFGenerator",
    "DP NMF of log-normalised HVGs + truncated C-vine (Frank) per cell type in factor space, NB counts",
    data="counts",
    units="sample,donor",
    private="yes",
)
registry.register(
    "nb_baseline",
    "scdpsynth.generators.nb_baseline:NBBaseline",
    "Reference floor, non-private only (eps=None): the CAMDA challenge's baseline, independent per-type NB/Poisson "
    "genes by moments",
    data="counts",
    units="sample",
    private="no: reference floor (eps=None only)",
)
registry.register(
    "dp_vae",
    "scdpsynth.generators.dp_vae:DPVAE",
    "Class-conditional VAE trained with DP-SGD (opacus); Gaussian decoder, or NB/ZINB for raw counts",
    data="continuous (counts with likelihood='nb'/'zinb')",
    units="sample",
    private="yes",
)
registry.register(
    "dp_gan",
    "scdpsynth.generators.dp_gan:DPGAN",
    "Conditional Wasserstein GAN; DP-SGD critic (opacus), generator DP by post-processing (DPGAN)",
    data="continuous",
    units="sample",
    private="yes",
)

__all__ = ["BaseGenerator", "registry"]
