"""Lazy torch/opacus imports, devices, seeded torch generators and initialisation of the deep generators.

Nothing here imports torch or opacus at module import time, so ``import scdpsynth`` stays fast.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "import_opacus",
    "import_torch",
    "init_linear_",
    "one_hot",
    "secure_generator",
    "select_device",
    "torch_generator",
]


def import_torch():
    """Import torch lazily, with an install hint."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a dependency of the deep generators
        raise ImportError(
            "The deep generators (dp_vae, dp_gan) need PyTorch and opacus: pip install torch opacus"
        ) from err
    return torch


def import_opacus():
    """Import opacus lazily, with an install hint."""
    try:
        import opacus
    except ImportError as err:  # pragma: no cover
        raise ImportError("The deep generators (dp_vae, dp_gan) need opacus for DP-SGD: pip install opacus") from err
    return opacus


def select_device(device="auto"):
    """Return a :class:`torch.device` for ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:i]"``."""
    torch = import_torch()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {type(device).__name__}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}). Use device='auto' (falls back to the CPU) or device='cpu'."
            )
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
        return dev
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {device!r}.")


def torch_generator(rng: np.random.Generator, device="cpu"):
    """A :class:`torch.Generator` on ``device`` seeded from ``rng`` (global RNG untouched).

    The seed is a 63-bit draw of ``rng`` (torch generators take 64-bit seeds): with ``rng`` from fresh OS entropy,
    as in every private fit by default, the seed is secret and too large to enumerate.
    """
    torch = import_torch()
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return gen


def secure_generator():
    """A cryptographically secure torch generator (``torchcsprng``, seeded from ``/dev/urandom``), as opacus' secure
    mode uses: one generator for CPU and CUDA tensors.
    """
    try:
        import torchcsprng
    except ImportError as err:
        raise ImportError(
            "secure_rng=True needs the torchcsprng package (opacus' secure mode: cryptographically secure DP-SGD "
            "noise and Poisson sampling): pip install torchcsprng (a build matching your torch version, see "
            "https://github.com/pytorch/csprng#installation), or use secure_rng=False (the default: numpy/torch "
            "pseudo-random generators seeded from fresh OS entropy)."
        ) from err
    return torchcsprng.create_random_device_generator("/dev/urandom")


def init_linear_(module, generator) -> None:
    """Re-initialise every ``nn.Linear`` in ``module`` like torch's default init, drawing from ``generator``.

    torch's default initialisation draws from the global RNG; this keeps fits reproducible without touching it.
    """
    torch = import_torch()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
                    torch.nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def one_hot(y, n_classes: int, device):
    """Float one-hot matrix of integer codes as a torch tensor on ``device``."""
    torch = import_torch()
    out = torch.zeros(len(y), n_classes, device=device)
    out[torch.arange(len(y)), torch.as_tensor(np.asarray(y), device=device)] = 1.0
    return out
