"""What can be done to a finished embedding without the model: truncation to a Matryoshka prefix."""

from __future__ import annotations

import numpy as np

from cft.errors import CFTError


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """(n, width) -> (n, dim): the first `dim` dimensions, L2-normalized again, as the Matryoshka loss scored them
    (for normalized input this equals truncating the raw embedding, then normalizing)."""
    if dim > embeddings.shape[1]:
        raise CFTError(f"--dim {dim} is larger than the embedding ({embeddings.shape[1]} dimensions)")
    head = np.asarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return np.ascontiguousarray(head / np.maximum(norms, 1e-12), dtype=np.float32)
