"""Row-chunked reading of out-of-core expression matrices (backed h5ad, h5py, dask) without densifying sparse data."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._progress import progress_bar

__all__ = ["is_in_memory", "is_sparse", "iter_row_blocks", "load_matrix", "load_rows"]

CHUNK_ROWS = 20_000


def is_in_memory(X) -> bool:
    """True for numpy arrays and scipy sparse matrices (everything else is read in row chunks)."""
    return isinstance(X, np.ndarray) or sparse.issparse(X)


def is_sparse(X) -> bool:
    """True for scipy sparse matrices and for out-of-core sources read as sparse blocks (backed CSR/CSC h5ad, dask
    arrays with sparse chunks); only the first row of an out-of-core source is read.
    """
    if is_in_memory(X):
        return sparse.issparse(X)
    return sparse.issparse(_read(X, 0, min(1, X.shape[0])))


def _read(X, start: int, stop: int):
    block = X[start:stop]
    if hasattr(block, "compute"):  # dask: computed by the active scheduler (a distributed cluster if one is set)
        block = block.compute()
    return block


def iter_row_blocks(X, chunk_rows: int = CHUNK_ROWS, *, progress: bool | None = False, desc: str = "reading"):
    """Yield ``(start, stop, block)`` over row blocks of ``X``; sparse sources give CSR blocks, dense ones arrays."""
    n = X.shape[0]
    starts = range(0, n, int(chunk_rows))
    for start in progress_bar(starts, desc=desc, progress=progress, unit="block"):
        stop = min(n, start + int(chunk_rows))
        block = _read(X, start, stop)
        if sparse.issparse(block):
            block = block.tocsr()
        else:
            block = np.asarray(block)
        yield start, stop, block


def load_matrix(X, chunk_rows: int = CHUNK_ROWS, *, progress: bool | None = None):
    """``X`` in memory: unchanged if it already is; else read in row chunks, as CSR for sparse sources.

    Backed AnnData (``sc.read_h5ad(path, backed="r")``), h5py datasets and dask arrays (dense or with sparse chunks)
    are supported. Sparse sources never become dense; a dense source becomes a numpy array.
    """
    if is_in_memory(X):
        return X
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise TypeError(f"Expected a 2-D expression matrix, got {type(X).__name__}.")
    blocks = [b for _, _, b in iter_row_blocks(X, chunk_rows, progress=progress, desc="reading X")]
    if any(sparse.issparse(b) for b in blocks):
        return sparse.vstack([sparse.csr_matrix(b) for b in blocks], format="csr")
    return np.vstack(blocks)


def load_rows(X, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS, *, progress: bool | None = None):
    """The rows ``rows`` (sorted, unique) of ``X`` in memory, read block by block so that only they are kept.

    In-memory input is indexed directly (sparse stays sparse, as CSR); out-of-core input is streamed as in
    :func:`load_matrix`, each block keeping its selected rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= X.shape[0]:
        raise ValueError("rows must be non-empty, sorted, unique and within the matrix.")
    if is_in_memory(X):
        return X.tocsr()[rows] if sparse.issparse(X) else X[rows]
    parts = []
    for start, stop, block in iter_row_blocks(X, chunk_rows, progress=progress, desc="reading X"):
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            parts.append(block[rows[lo:hi] - start])
    if any(sparse.issparse(b) for b in parts):
        return sparse.vstack([sparse.csr_matrix(b) for b in parts], format="csr")
    return np.vstack(parts)
