"""smartnoise-synth's MST on one bulk split; run by ``bench_bulk.py --smartnoise-python`` in *another* environment.

smartnoise-synth pins opacus 0.14, so it cannot live in scdpsynth's environment. This script imports only numpy,
pandas and ``snsynth``::

    python _smartnoise_mst.py train.npz syn.npz EPS

``train.npz`` holds ``X`` (rows x genes, continuous) and ``y`` (integer class codes). MST runs with smartnoise's own
DP preprocessing of the continuous columns (``preprocessor_eps`` = 10% of ``EPS``, the rest to MST), the label as a
categorical column, and samples as many rows as the training data. ``syn.npz`` receives ``X`` and ``y``.
"""

import sys

import numpy as np
import pandas as pd
from snsynth import Synthesizer


def main() -> None:
    src, dst, eps = sys.argv[1], sys.argv[2], float(sys.argv[3])
    data = np.load(src)
    X, y = data["X"], data["y"]
    genes = [f"g{j}" for j in range(X.shape[1])]
    df = pd.DataFrame(X, columns=genes)
    df["label"] = y.astype(int)
    synth = Synthesizer.create("mst", epsilon=eps)
    syn = synth.fit_sample(
        df,
        preprocessor_eps=0.1 * eps,
        categorical_columns=["label"],
        continuous_columns=genes,
    )
    np.savez(dst, X=syn[genes].to_numpy(dtype=float), y=syn["label"].to_numpy(dtype=int))


if __name__ == "__main__":
    main()
