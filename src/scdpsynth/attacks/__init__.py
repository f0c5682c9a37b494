"""Membership-inference attacks (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry

registry = Registry("attack")

# attack membership inference (#7): name -> "module:function"; extra columns shown by tl.list_attacks()
_A = "scdpsynth.attacks"
registry.register(
    "dcr",
    f"{_A}.distance:dcr",
    "Distance to closest synthetic record (GAN-Leaks full black-box)",
    needs_reference=False,
    needs_generator=False,
    level="record",
)
registry.register(
    "dcr_calibrated",
    f"{_A}.distance:dcr_calibrated",
    "GAN-Leaks calibrated: distance to reference minus distance to synthetic",
    needs_reference=True,
    needs_generator=False,
    level="record",
)
registry.register(
    "domias",
    f"{_A}.domias:domias",
    "DOMIAS: KDE density ratio synthetic / reference (PCA space)",
    needs_reference=True,
    needs_generator=False,
    level="record",
)
registry.register(
    "logan",
    f"{_A}.logan:logan",
    "LOGAN black-box: random forest synthetic vs reference",
    needs_reference=True,
    needs_generator=False,
    level="record",
)
registry.register(
    "mahalanobis",
    f"{_A}.mahalanobis:mahalanobis",
    "Mahalanobis distance under a shadow Gaussian copula fit on synthetic data (MAMA-MIA style)",
    needs_reference=False,
    needs_generator=False,
    level="record",
)
registry.register(
    "mahalanobis_ref",
    f"{_A}.mahalanobis:mahalanobis_ref",
    "Gaussian-copula log-density ratio synthetic / reference (MAMA-MIA style, auxiliary data)",
    needs_reference=True,
    needs_generator=False,
    level="record",
)
registry.register(
    "pseudobulk_rf",
    f"{_A}.pseudobulk_rf:pseudobulk_rf",
    "Shadow-model random forest on donor pseudobulk features (needs shadow=)",
    needs_reference=True,
    needs_generator=False,
    level="donor",
)
registry.register(
    "whitebox_vae",
    f"{_A}.whitebox_vae:whitebox_vae",
    "White-box loss attack: minus per-record negative ELBO of a fitted VAE (needs generator=)",
    needs_reference=False,
    needs_generator=True,
    level="record",
)

__all__ = ["registry"]
