"""Loads the base model (hub id, local folder or GGUF file) without its LM head, and wraps it with LoRA.

`build_lora_model` is for training (fresh adapter, `get_peft_model`); `load_adapter_model` is for inference (a saved
adapter and its metadata). Only the adapter is ever saved; merging happens only when exporting.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from cft.config import LoraSettings, ModelConfig
from cft.errors import CFTError
from cft.modeling.metadata import AdapterMetadata
from cft.modeling.source import EMBEDDED_MODELS, portable_base, resolve_source  # noqa: F401 - re-exported
from cft.modeling.tokenization import prepare_tokenizer

logger = logging.getLogger(__name__)

def _load_error(what: str, config: ModelConfig, error: Exception) -> CFTError:
    """One message for anything a `from_pretrained` raises: whose fault, and what to do."""
    first = str(error).splitlines()[0] if str(error) else ""
    detail = f"{type(error).__name__}: {first}"[:300]
    impl = config.attn_implementation
    if impl and impl != "eager" and impl in str(error).lower().replace("flashattention2", "flash_attention_2"):
        return CFTError(f"model.attn_implementation={impl} is not available here ({detail}); use sdpa or eager")
    if Path(config.name_or_path).expanduser().exists() or config.name_or_path.endswith(".gguf"):
        return CFTError(f"{config.name_or_path}: cannot load the {what} ({detail}); its files look damaged or "
                        "incomplete: copy or download them again")
    return _hub_error(what, config.name_or_path, error)


def resolve_dtype(dtype: str, device: torch.device | str) -> torch.dtype:
    if dtype == "auto":
        is_cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if is_cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def _hub_error(what: str, source: str, error: Exception) -> CFTError:
    return CFTError(
        f"cannot load {what} from {source!r} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
        "Give a hub id (online), a local folder, or a .gguf file"
    )


def pretrained_source(config: ModelConfig) -> tuple[str, dict[str, Any]]:
    """What to pass to any `from_pretrained` for this model: (source, keyword arguments)."""
    source, gguf = resolve_source(config.name_or_path, config.gguf_file)
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    if config.revision:
        kwargs["revision"] = config.revision
    return source, kwargs


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    source, kwargs = pretrained_source(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as error:  # damaged files surface as many types (struct.error, SafetensorError, ...)
        raise _load_error("tokenizer", config, error) from None
    return prepare_tokenizer(tokenizer)


def load_backbone(config: ModelConfig, device: torch.device | str = "cpu") -> PreTrainedModel:
    """The transformer body only (AutoModel): no LM head, no hidden states of all layers."""
    source, kwargs = pretrained_source(config)
    kwargs["dtype"] = resolve_dtype(config.dtype, device)
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        model = AutoModel.from_pretrained(source, **kwargs)
    except Exception as error:  # damaged files surface as many types (struct.error, SafetensorError, ...)
        raise _load_error("model", config, error) from None
    model.config.use_cache = False
    if "gguf_file" in kwargs:
        _as_dense(model, config.name_or_path)
    return model


def _as_dense(model: PreTrainedModel, source: str) -> None:
    """A GGUF file is quantized, but transformers unpacks it into plain float weights when it has no GGUF matmul
    kernel (always on CPU here). Such a model is dense: drop the quantizer so that LoRA training is allowed."""
    if getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False):
        return
    packed = [name for name, param in model.named_parameters() if not param.dtype.is_floating_point]
    if packed:
        raise CFTError(f"{source}: GGUF weights were kept quantized ({packed[0]}, ...); LoRA training needs them "
                       "unpacked: uninstall the `kernels` package or convert the model to safetensors")
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def build_lora_model(backbone: PreTrainedModel, settings: LoraSettings, gradient_checkpointing: bool = False,
                     base: ModelConfig | None = None) -> Any:
    """Wraps a fresh backbone in a trainable LoRA adapter (training path).

    `base` (the recipe's model) makes every adapter saved from it, checkpoints included, name its base as
    `portable_base` says instead of the folder the weights were read from on this machine.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    lora_config = LoraConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
    )
    if gradient_checkpointing:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        backbone.enable_input_require_grads()
    try:
        model = get_peft_model(backbone, lora_config)
    except ValueError as error:
        names = sorted({name.rsplit(".", 1)[-1] for name, module in backbone.named_modules()
                        if isinstance(module, torch.nn.Linear)})
        raise CFTError(f"lora.target_modules {settings.target_modules!r}: {error}. Linear modules of this model: "
                       f"{', '.join(names)} (or 'all-linear')") from None
    if base is not None:
        peft_config = model.peft_config["default"]
        peft_config.base_model_name_or_path, peft_config.revision = portable_base(base.name_or_path, base.revision)
    return model


def load_adapter_model(adapter_dir: str | Path, device: torch.device | str = "cpu",
                       dtype: str | None = None) -> tuple[Any, PreTrainedTokenizerBase, AdapterMetadata]:
    """A saved adapter on its base model, in eval mode (inference path). Returns (model, tokenizer, metadata).

    `dtype` overrides the dtype recorded in the metadata (export merges in float32).
    """
    import dataclasses

    from peft import PeftModel

    metadata = AdapterMetadata.load(adapter_dir)
    config = metadata.model
    if dtype is not None:
        config = dataclasses.replace(config, dtype=dtype)
    missing = [name for name, pattern in (("adapter_config.json", "adapter_config.json"),
                                          ("adapter_model.safetensors", "adapter_model.*")) if not list(Path(adapter_dir).glob(pattern))]
    if missing:
        raise CFTError(f"{adapter_dir}: {' and '.join(missing)} missing; copy the whole adapter folder that cft train "
                       "saved")
    backbone = load_backbone(config, device)
    try:
        model = PeftModel.from_pretrained(backbone, str(adapter_dir))
    except Exception as error:  # missing or damaged adapter_config.json / adapter_model.safetensors
        first = str(error).splitlines()[0] if str(error) else ""
        raise CFTError(f"{adapter_dir}: not a readable LoRA adapter ({type(error).__name__}: {first[:200]}); it needs "
                       "adapter_config.json and adapter_model.safetensors as cft train saves them") from None
    if list(Path(adapter_dir).glob("tokenizer*")):
        try:
            tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(adapter_dir),
                                                                        trust_remote_code=config.trust_remote_code))
        except Exception as error:
            first = str(error).splitlines()[0] if str(error) else ""
            raise CFTError(f"{adapter_dir}: its tokenizer files are damaged ({type(error).__name__}: {first[:200]}); "
                           "copy the adapter folder again") from None
    else:
        tokenizer = load_tokenizer(config)
    model.eval()
    return model, tokenizer, metadata
