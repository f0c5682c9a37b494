"""Training speed of the deep DP generators (dp_vae, dp_gan): epochs/s on CPU (and GPU when available).

Run from the project root::

    python benchmarks/bench_deep.py               # speed table + full default runs on bulk ALL
    python benchmarks/bench_deep.py --quick       # speed table only, fewer epochs
    python benchmarks/bench_deep.py --devices cpu # restrict devices

Data: bulk ALL microarray (128 x 12,625 log2, label ``lineage``) and the embedded Kang PBMC counts (1,556 cells x
1,267 genes, ``cell_type``) for the NB/ZINB VAE. Prints one row per configuration: device, torch CPU threads
("torch" = torch's own setting, 2 on a 2-core machine; the generators' default is 1), eps,
epochs, DP-SGD steps, fit seconds, epochs/s, steps/s and the accountant's eps_spent.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import scdpsynth as sd
from scdpsynth.generators.dp_gan import DPGAN
from scdpsynth.generators.dp_vae import DPVAE


def _data():
    all_ = sd.datasets.bioc_all()
    X_all = np.asarray(all_.X, dtype=float)
    y_all = all_.obs["lineage"].cat.codes.to_numpy().astype(np.int64)
    kang = sd.datasets.kang_example()
    X_k = kang.X.toarray().astype(float)
    y_k = kang.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    return {"ALL": (X_all, y_all), "kang": (X_k, y_k)}


def _fit(cls, X, y, **kw):
    t = time.perf_counter()
    gen = cls(random_state=0, **kw).fit(X, y, n_classes=int(y.max()) + 1)
    gen.sample(np.bincount(y))
    return gen, time.perf_counter() - t


def _row(name, data, gen, secs, kw):
    eps_spent = gen.privacy_report()["eps_spent"]
    print(
        f"{name:<10} {data:<5} {gen.device_!s:<5} {kw.get('num_threads') or 'torch'!s:>7} "
        f"{kw.get('eps')!s:>5} {gen.epochs:>6} {gen.steps_:>6} {secs:>8.1f} {gen.epochs / secs:>9.2f} "
        f"{gen.steps_ / secs:>8.2f} {eps_spent:>9.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="speed table only, 3 epochs")
    parser.add_argument("--devices", nargs="+", default=None, help="devices to time (default: cpu, + cuda if any)")
    args = parser.parse_args()
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    data = _data()
    epochs = 3 if args.quick else 5
    print(f"torch {torch.__version__}, default CPU threads {torch.get_num_threads()}, CUDA {torch.cuda.is_available()}")
    print("speed: epochs/s = expected passes over the data per second of fit+sample (n=128 ALL, n=1556 Kang)")
    print(
        f"{'method':<10} {'data':<5} {'dev':<5} {'threads':>7} {'eps':>5} {'epochs':>6} {'steps':>6} {'fit_s':>8} "
        f"{'epochs/s':>9} {'steps/s':>8} {'eps_spent':>9}"
    )
    configs = [
        ("dp_vae", DPVAE, "ALL", {}),
        ("dp_gan", DPGAN, "ALL", {}),
        ("dp_vae_nb", DPVAE, "kang", {"likelihood": "nb", "batch_size": 128}),
    ]
    for device in devices:
        threads = [None, 1] if device == "cpu" else [None]
        for name, cls, dname, extra in configs:
            X, y = data[dname]
            for nt in threads:
                for eps in (None, 3.0):
                    kw = dict(eps=eps, delta=1e-5, epochs=epochs, device=device, num_threads=nt, **extra)
                    gen, secs = _fit(cls, X, y, **kw)
                    _row(name, dname, gen, secs, kw)
    if args.quick:
        return
    print("\nfull default runs on bulk ALL (128 x 12,625), eps=3, delta=1e-5, all other parameters default:")
    X, y = data["ALL"]
    for name, cls in (("dp_vae", DPVAE), ("dp_gan", DPGAN)):
        gen, secs = _fit(cls, X, y, eps=3.0, delta=1e-5)
        print(
            f"{name}: {gen.epochs} epochs, {gen.steps_} steps, noise multiplier {gen.noise_multiplier_:.3f}, "
            f"standardize={gen.standardize_}, fit+sample {secs:.1f} s, "
            f"eps_spent {gen.privacy_report()['eps_spent']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
