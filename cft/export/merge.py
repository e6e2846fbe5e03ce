"""Loads a saved adapter on its base model in full precision and folds the LoRA weights into it.

Merging happens only here (training and evaluation keep the adapter separate). The base is loaded in float32 so the
merge itself adds no rounding; the merged weights are cast to the requested dtype only when saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cft.errors import CFTError
from cft.export.options import EXPORT_DTYPES
from cft.modeling.metadata import METADATA_FILE, AdapterMetadata
from notify.run_layout import ADAPTER_DIR


def find_adapter_dir(adapter: str) -> Path:
    """A local folder holding the adapter: the URI itself (downloaded when s3://), or a local run folder's adapter/."""
    from cft.storage.bucket import materialize

    folder = materialize(adapter)
    if not (folder / METADATA_FILE).is_file() and (folder / ADAPTER_DIR / METADATA_FILE).is_file():
        return folder / ADAPTER_DIR  # a run folder was given
    if not folder.is_dir():
        raise CFTError(f"{adapter}: is a file; give an adapter folder saved by cft (<run>/adapter)")
    if not (folder / METADATA_FILE).is_file():
        raise CFTError(f"{adapter}: no {METADATA_FILE}; give an adapter folder saved by cft (<run>/adapter)")
    return folder


def load_for_export(adapter_dir: Path, device: torch.device) -> tuple[Any, Any, AdapterMetadata]:
    """(PeftModel in eval mode, tokenizer prepared as in training, metadata), weights in float32."""
    from cft.modeling.backbone import load_adapter_model

    return load_adapter_model(adapter_dir, device, dtype="float32")


def stored_dtype(metadata: AdapterMetadata) -> torch.dtype:
    """The dtype the base checkpoint was published in (float32 when it does not say, e.g. GGUF)."""
    from transformers import AutoConfig

    from cft.modeling.backbone import pretrained_source

    source, kwargs = pretrained_source(metadata.model)
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError):
        return torch.float32
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def resolve_export_dtype(choice: str, metadata: AdapterMetadata) -> torch.dtype:
    if choice not in EXPORT_DTYPES:
        raise CFTError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)} (got {choice!r})")
    return stored_dtype(metadata) if choice == "auto" else getattr(torch, choice)


def merge(model: Any, dtype: torch.dtype) -> Any:
    """The base model with the LoRA update folded in (a plain transformers model), cast to `dtype`."""
    merged = model.merge_and_unload()
    merged.config.use_cache = True  # a plain model again: restore the default training turned off
    return merged.to(dtype).eval()


def save_merged(merged: Any, tokenizer: Any, metadata: AdapterMetadata, folder: Path, source: str) -> None:
    """A Hugging Face model folder: weights, config, the training tokenizer, and cft's metadata with provenance."""
    folder.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    save_export_metadata(metadata, folder, source, merged.dtype)


def save_export_metadata(metadata: AdapterMetadata, folder: Path, source: str, dtype: torch.dtype) -> None:
    # Same fields as an adapter's (plus EXPORT_KEYS, which AdapterMetadata.load expects), so pooling, EOS,
    # max_length and the prompt template travel with the merged weights; model.name_or_path stays as provenance.
    data = {**metadata.to_dict(), "merged": True, "exported_from": source,
            "export_dtype": str(dtype).replace("torch.", "")}
    (folder / METADATA_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
