"""`cft export`: an adapter -> a merged Hugging Face model folder and/or a sentence-transformers folder.

    --format hf     DIR is the merged model (AutoModel + tokenizer + cft_metadata.json)
    --format st     DIR is the sentence-transformers model: SentenceTransformer(DIR).encode(texts)
    --format both   DIR/hf and DIR/st

Everything is built in a temporary folder next to DIR and renamed into place only once it is complete and verified,
so DIR never holds a half-written export. Verification encodes probe sentences (one longer than max_length) with the
adapter as cft does and with each exported folder as its users would load it, and fails the export on a mismatch.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cft.errors import CFTError

logger = logging.getLogger("cft")

FORMATS = ("hf", "st", "both")
FP32_TOLERANCE = 1e-4  # max |difference| of L2-normalized embeddings, float32 export
LOW_PRECISION_MIN_COSINE = 0.98  # bf16/fp16 exports differ by the weights' rounding


@dataclass
class ExportResult:
    output: Path
    hf_dir: Path | None = None
    st_dir: Path | None = None
    dtype: str = "float32"
    checks: dict[str, dict[str, float]] = field(default_factory=dict)  # folder -> {"max_abs_diff", "min_cosine"}


def _check_output(output: Path, force: bool, adapter_dir: Path | None = None) -> None:
    if output.exists() and not output.is_dir():
        raise CFTError(f"--output {output}: exists and is not a folder")
    if adapter_dir is not None:
        adapter = adapter_dir.resolve()
        target = output.resolve()
        if adapter == target or target in adapter.parents:
            raise CFTError(f"--output {output}: holds the adapter being exported; choose another folder")
        if adapter in target.parents:
            raise CFTError(f"--output {output}: is inside the adapter being exported ({adapter_dir}); choose a folder "
                           "outside it")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise CFTError(f"--output {output}: folder is not empty; choose another, or pass --force to replace it")


def _replace_dir(source: Path, output: Path) -> None:
    """Moves a finished folder to `output`, replacing what was there only after the new one is in place."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    try:
        os.replace(source, output)
    except OSError:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _compare(name: str, reference: np.ndarray, got: np.ndarray, dtype: torch.dtype) -> dict[str, float]:
    if got.shape != reference.shape:
        raise CFTError(f"export check failed: the {name} model gives embeddings of shape {got.shape}, "
                       f"cft gives {reference.shape}")
    max_abs = float(np.abs(got - reference).max())
    cosines = (got * reference).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
    min_cos = float(cosines.min())
    ok = max_abs <= FP32_TOLERANCE if dtype == torch.float32 else min_cos >= LOW_PRECISION_MIN_COSINE
    if not ok:
        raise CFTError(f"export check failed: the {name} model's embeddings differ from cft's "
                       f"(max |diff| {max_abs:.2e}, min cosine {min_cos:.5f}); nothing was written")
    return {"max_abs_diff": max_abs, "min_cosine": min_cos}


def _readme(kind: str, metadata: Any, source: str, dtype: str, prefix: str | None) -> str:
    prompt = (f"Every sentence is prefixed with the training prompt {prefix!r} (sentence-transformers prompt "
              "\"cft\", the default).\n\n") if kind == "st" and prefix else ""
    if kind == "st":
        remote = ", trust_remote_code=True" if metadata.trust_remote_code else ""
        body = (
            "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
            f"model = SentenceTransformer(\"path/to/this/folder\"{remote})\n"
            "embeddings = model.encode([\"a sentence\", \"another one\"])  # L2-normalized\n```\n\n"
            f"The tokenizer appends EOS itself (truncating the content to keep it last, {metadata.max_length} tokens "
            f"in all) and pooling is `{metadata.pooling}`, so these are the embeddings cft computes for the adapter."
        )
    else:
        body = (
            "A plain transformers backbone (`AutoModel`, no LM head) with the LoRA adapter merged in.\n\n"
            "```python\nfrom cft.modeling.encoder import TextEncoder\n\n"
            f"encoder = TextEncoder.from_base(\"path/to/this/folder\", pooling=\"{metadata.pooling}\", "
            f"max_length={metadata.max_length}, prompt_template={metadata.prompt_template!r})\n"
            "embeddings = encoder.encode([\"a sentence\", \"another one\"])\n```\n\n"
            "Without cft: tokenize, append the EOS token id (after truncating to max_length - 1), run the model, "
            f"take the hidden state of the last real token ({metadata.pooling} pooling) and L2-normalize. "
            "The tokenizer here does not append EOS by itself."
        )
    return (f"# {'sentence-transformers model' if kind == 'st' else 'Merged model'} exported by cft\n\n"
            f"Exported from `{source}` (base model `{metadata.base_model}`), weights in {dtype}.\n\n{prompt}{body}\n")


def export_adapter(adapter: str, output: str | Path, fmt: str = "both", force: bool = False, dtype: str = "auto",
                   device: str | None = None, verify: bool = True) -> ExportResult:
    """Exports `adapter` (local folder or s3:// URI) to `output`; see the module docstring for the layout."""
    from transformers import AutoTokenizer

    from cft.export.merge import (find_adapter_dir, load_for_export, merge, resolve_export_dtype,
                                  save_export_metadata, save_merged)
    from cft.export.st_model import build_st_folder, prompt_prefix
    from cft.export.tokenizer import PROBE_TEXTS, check_same_ids, eos_appending_tokenizer, long_probe
    from cft.modeling.encoder import TextEncoder, resolve_device
    from cft.modeling.metadata import AdapterMetadata

    if fmt not in FORMATS:
        raise CFTError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if "://" in str(output):
        raise CFTError(f"--output {output}: export writes a local folder; upload it afterwards if needed")
    output = Path(output).expanduser().absolute()
    _check_output(output, force, None if "://" in str(adapter) else Path(adapter).expanduser())  # before a download
    want_hf, want_st = fmt in ("hf", "both"), fmt in ("st", "both")

    adapter_dir = find_adapter_dir(adapter)
    _check_output(output, force, adapter_dir)
    metadata = AdapterMetadata.load(adapter_dir)
    prefix = prompt_prefix(metadata.prompt_template) if want_st else None  # refuse before any heavy work
    target_dtype = resolve_export_dtype(dtype, metadata)
    run_device = resolve_device(device)
    result = ExportResult(output=output, dtype=str(target_dtype).replace("torch.", ""))

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the export's permissions
    try:
        model, tokenizer, metadata = load_for_export(adapter_dir, run_device)
        probes = [*PROBE_TEXTS, long_probe(metadata.max_length)]
        reference = None
        if verify:
            # float32, no autocast: the exact embedding the adapter defines, whatever the training dtype
            cft_encoder = TextEncoder(model, tokenizer, dataclasses.replace(metadata, dtype="float32"), name="cft",
                                      revision="export", device=run_device)
            reference = cft_encoder.encode(probes)
            del cft_encoder
        merged = merge(model, target_dtype)
        merged_dir = staging / ("hf" if want_hf else ".merged")
        save_merged(merged, tokenizer, metadata, merged_dir, adapter)
        if want_hf:
            (merged_dir / "README.md").write_text(_readme("hf", metadata, adapter, result.dtype, prefix), encoding="utf-8")
        del merged, model
        gc.collect()

        if want_st:
            st_dir = staging / "st"
            eos_tokenizer, _ = eos_appending_tokenizer(tokenizer, metadata.max_length)
            build_st_folder(merged_dir, st_dir, eos_tokenizer, metadata, prefix)
            save_export_metadata(metadata, st_dir, adapter, target_dtype)
            (st_dir / "README.md").write_text(_readme("st", metadata, adapter, result.dtype, prefix), encoding="utf-8")
            check_same_ids(tokenizer, AutoTokenizer.from_pretrained(str(st_dir),
                                                                    trust_remote_code=metadata.trust_remote_code),
                           metadata.max_length, prefix, probes)
        if not want_hf:
            shutil.rmtree(merged_dir)

        if reference is not None:
            if want_hf:
                hf_encoder = TextEncoder.from_base(str(merged_dir), pooling=metadata.pooling,
                                                   max_length=metadata.max_length,
                                                   prompt_template=metadata.prompt_template,
                                                   trust_remote_code=metadata.trust_remote_code, dtype="float32",
                                                   device=run_device)
                result.checks["hf"] = _compare("merged Hugging Face", reference, hf_encoder.encode(probes), target_dtype)
                del hf_encoder
            if want_st:
                from sentence_transformers import SentenceTransformer

                st_model = SentenceTransformer(str(staging / "st"), device=str(run_device),
                                               trust_remote_code=metadata.trust_remote_code)
                got = st_model.encode(probes, convert_to_numpy=True).astype(np.float32)
                result.checks["st"] = _compare("sentence-transformers", reference, got, target_dtype)
                del st_model
            gc.collect()

        _check_output(output, force)  # nothing appeared there meanwhile
        if fmt == "both":
            _replace_dir(staging, output)
            result.hf_dir, result.st_dir = output / "hf", output / "st"
        else:
            _replace_dir(staging / fmt, output)
            result.hf_dir = output if want_hf else None
            result.st_dir = output if want_st else None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result
