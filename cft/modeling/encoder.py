"""Batched sentence encoding for evaluation and export: the same embedding training computed, fast.

Sentences are tokenized once (with EOS), sorted by length so each batch pads only to its own longest sentence, run
through the backbone under bf16 autocast on GPU, pooled, normalized, cast to float32 (mteb rejects bf16 arrays), and
returned in the caller's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cft.config import ModelConfig
from cft.errors import CFTError
from cft.modeling.backbone import load_adapter_model, load_backbone, load_tokenizer, resolve_dtype
from cft.modeling.metadata import AdapterMetadata
from cft.modeling.pooling import embed_batch
from cft.modeling.tokenization import pad_batch, tokenize_with_eos

__all__ = ["TextEncoder", "default_device", "embed_batch"]  # embed_batch: benchmarks/bench_train.py imports it here


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None, flag: str = "--device") -> torch.device:
    """A device that exists on this machine (default: cuda if available), checked before any model loads."""
    if name is None or name == "":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CFTError(f"{flag} {name}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CFTError(f"{flag} {name}: no CUDA GPU is available here; use {flag} cpu")
        if device.index is not None and device.index >= count:
            raise CFTError(f"{flag} {name}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CFTError(f"{flag} {name}: Apple MPS is not available here; use {flag} cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CFTError(f"{flag} {name}: cft runs on cpu, cuda or mps (got {device.type})")
    return device


def _adapter_revision(adapter_dir: Path) -> str:
    """A content hash of the adapter weights: a retrained adapter at the same path gets a new revision."""
    digest = hashlib.sha256()
    for path in sorted(adapter_dir.glob("adapter_model.*")) + sorted(adapter_dir.glob("cft_metadata.json")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TextEncoder:
    """Encodes sentences with a (LoRA-adapted) causal LM exactly as cft trains it."""

    def __init__(self, model: Any, tokenizer: Any, metadata: AdapterMetadata, name: str, revision: str,
                 device: torch.device | None = None) -> None:
        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.name = name
        self.revision = revision
        self.prompts = metadata.model.prompts()  # evaluation may replace them (`cft eval --prompt`)
        self.autocast_dtype = resolve_dtype(metadata.model.dtype, self.device)

    @classmethod
    def from_base(cls, model: str, gguf_file: str | None = None, *, pooling: str = "last_token", max_length: int = 128,
                  prompt_template: str | None = None, query_template: str | None = None,
                  document_template: str | None = None, trust_remote_code: bool = False, dtype: str = "auto",
                  device: torch.device | str | None = None) -> "TextEncoder":
        device = resolve_device(device)
        config = ModelConfig(name_or_path=model, gguf_file=gguf_file, pooling=pooling, max_length=max_length,
                             prompt_template=prompt_template, query_template=query_template,
                             document_template=document_template, trust_remote_code=trust_remote_code, dtype=dtype)
        metadata = AdapterMetadata(config)
        backbone = load_backbone(config, device)
        return cls(backbone, load_tokenizer(config), metadata, name=f"cft/{Path(model).name}", revision="base", device=device)

    @classmethod
    def from_adapter(cls, adapter: str | Path, device: torch.device | str | None = None) -> "TextEncoder":
        """`adapter` is a local adapter folder (the CLI downloads an s3:// one first: `cft.storage.materialize`)."""
        folder = Path(adapter)
        device = resolve_device(device)
        model, tokenizer, metadata = load_adapter_model(folder, device)
        name = f"cft/{Path(metadata.model.name_or_path).name}-{metadata.run_id or folder.parent.name}"
        return cls(model, tokenizer, metadata, name=name, revision=_adapter_revision(folder), device=device)

    def base_encoder(self) -> "TextEncoder":
        """The same base model without the adapter (for before/after comparisons), sharing weights."""
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return self
        encoder = _BaseView(self)
        return encoder  # type: ignore[return-value]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False,
               role: str = "query") -> np.ndarray:
        """(len(texts), dim) float32, L2-normalized, in the order given; `role` ("query" or "document") picks the
        prompt template, as training applied it to anchors and to positives and negatives."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.hidden_size if hasattr(self.model, "config") else 0), dtype=np.float32)
        ids = tokenize_with_eos(self.tokenizer, texts, self.metadata.model.max_length, self.prompts.for_role(role))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        vectors: list[torch.Tensor] = [None] * len(ids)  # type: ignore[list-item]
        use_autocast = self.device.type == "cuda" and self.autocast_dtype != torch.float32
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc="encoding", unit="batch", disable=not show_progress, leave=False):
            chunk = order[start:start + batch_size]
            batch = {key: value.to(self.device) for key, value in
                     pad_batch([ids[i] for i in chunk], self.tokenizer.pad_token_id).items()}
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=use_autocast):
                embedded = self._forward(batch)
            embedded = embedded.float()
            if self.metadata.normalize:
                embedded = F.normalize(embedded, dim=-1)
            embedded = embedded.cpu()
            for row, index in enumerate(chunk):
                vectors[index] = embedded[row]
        return torch.stack(vectors).numpy().astype(np.float32, copy=False)

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed_batch(self.model, batch, self.metadata.model.pooling)


class _BaseView(TextEncoder):
    """The adapter's base model: same tokenizer, pooling and template, LoRA layers disabled during forward."""

    def __init__(self, adapted: TextEncoder) -> None:  # noqa: D107 - shares the adapted encoder's state
        self.__dict__.update(adapted.__dict__)
        self.name = f"cft/{Path(adapted.metadata.model.name_or_path).name}"
        self.revision = "base"

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.model.disable_adapter():
            return embed_batch(self.model, batch, self.metadata.model.pooling)
