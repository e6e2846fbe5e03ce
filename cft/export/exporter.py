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
from cft.export.options import FORMATS, pushed_format
from notify.run_layout import TRAINING_PLOT

logger = logging.getLogger("cft")

FP32_TOLERANCE = 1e-4  # max |difference| of L2-normalized embeddings, float32 export
LOW_PRECISION_MIN_COSINE = 0.98  # bf16/fp16 exports differ by the weights' rounding


@dataclass
class ExportResult:
    output: Path
    hf_dir: Path | None = None
    st_dir: Path | None = None
    dtype: str = "float32"
    checks: dict[str, dict[str, float]] = field(default_factory=dict)  # folder -> {"max_abs_diff", "min_cosine"}
    adapter_dir: Path | None = None  # the local copy of the adapter that was exported
    metadata: Any = None  # its AdapterMetadata
    record: Any = None  # what its run left (model_card.RunRecord), as the cards used it


def _check_output(output: Path, force: bool, adapter_dir: Path | None = None) -> None:
    if output.exists() and not output.is_dir():
        raise CFTError(f"--out {output}: exists and is not a folder")
    if adapter_dir is not None:
        adapter = adapter_dir.resolve()
        target = output.resolve()
        if adapter == target or target in adapter.parents:
            raise CFTError(f"--out {output}: holds the adapter being exported; choose another folder")
        if adapter in target.parents:
            raise CFTError(f"--out {output}: is inside the adapter being exported ({adapter_dir}); choose a folder "
                           "outside it")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise CFTError(f"--out {output}: folder is not empty; choose another, or pass --force to replace it")


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


@dataclass
class _Job:
    """One export, checked before any heavy work: what to read, what to write, in which dtype, on which device."""

    adapter: str  # as the user gave it: recorded as provenance
    adapter_dir: Path
    output: Path
    fmt: str
    force: bool
    prompts: dict[str, str] | None  # the sentence-transformers prompts taken from the training templates
    dim: int | None  # sentence-transformers truncate_dim (a Matryoshka prefix), or None
    dtype: torch.dtype
    device: torch.device
    record: Any = None  # cft.export.model_card.RunRecord: what the run left, for the model cards
    repo_id: str | None = None  # the Hub repository the export is for, so its cards show how to load it from there

    @property
    def want_hf(self) -> bool:
        return self.fmt in ("hf", "both")

    @property
    def want_st(self) -> bool:
        return self.fmt in ("st", "both")

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")


def export_adapter(adapter: str, output: str | Path, fmt: str = "both", force: bool = False, dtype: str = "auto",
                   device: str | None = None, verify: bool = True, dim: int | None = None,
                   repo_id: str | None = None) -> ExportResult:
    """Exports `adapter` (local folder or s3:// URI) to `output`; see the module docstring for the layout.

    Each folder gets a model card (README.md, see `model_card`); `repo_id` makes its usage load from that Hub repo.
    `dim` records a truncation (`truncate_dim`) in the sentence-transformers folder.
    """
    from cft.export.merge import load_for_export
    from cft.export.model_card import read_run_record
    from cft.export.tokenizer import PROBE_TEXTS, long_probe

    job = _plan(adapter, output, fmt, force, dtype, device, dim)
    job.repo_id = repo_id
    metadata = _metadata(job.adapter_dir)
    job.record = read_run_record(adapter, job.adapter_dir, metadata)
    result = ExportResult(output=job.output, dtype=job.dtype_name, adapter_dir=job.adapter_dir, metadata=metadata,
                          record=job.record)
    staging = _staging_dir(job.output)
    try:
        model, tokenizer, metadata = load_for_export(job.adapter_dir, job.device)
        width = model.config.hidden_size
        if job.dim is not None and job.dim > width:
            raise CFTError(f"--dim {job.dim} is larger than the embedding of {metadata.model.name_or_path} "
                           f"({width} dimensions)")
        probes = [*PROBE_TEXTS, long_probe(metadata.model.max_length)]
        reference = _reference_embeddings(model, tokenizer, metadata, probes, job.device) if verify else None
        merged_dir = _write_merged(job, model, tokenizer, metadata, staging)
        del model
        gc.collect()
        if job.want_st:
            _write_st(job, merged_dir, tokenizer, metadata, staging / "st", probes)
        if not job.want_hf:
            shutil.rmtree(merged_dir)
        if reference is not None:
            _verify(job, metadata, staging, reference, probes, result)
        _move_into_place(job, staging, result)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result


def _plan(adapter: str, output: str | Path, fmt: str, force: bool, dtype: str, device: str | None,
          dim: int | None = None) -> _Job:
    """Every check that can refuse the export, before any model is loaded."""
    from cft.export.merge import find_adapter_dir, resolve_export_dtype
    from cft.export.st_model import st_prompts
    from cft.modeling.encoder import resolve_device
    from cft.modeling.metadata import AdapterMetadata

    if fmt not in FORMATS:
        raise CFTError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if "://" in str(output):
        raise CFTError(f"--out {output}: export writes a local folder; upload it afterwards if needed")
    output = Path(output).expanduser().absolute()
    _check_output(output, force, None if "://" in str(adapter) else Path(adapter).expanduser())  # before a download
    adapter_dir = find_adapter_dir(adapter)
    _check_output(output, force, adapter_dir)
    metadata = AdapterMetadata.load(adapter_dir)
    if dim is not None and (dim < 1 or fmt == "hf"):
        raise CFTError(f"--dim {dim}: " + ("must be >= 1" if dim < 1 else "truncate_dim is a sentence-transformers "
                                           "setting; use --format st or both"))
    if dim is not None and dim not in (metadata.matryoshka_dims or []):
        logger.warning("--dim %d: the adapter was trained with %s; a truncation it was not trained for usually "
                       "embeds worse", dim, f"loss.matryoshka_dims {metadata.matryoshka_dims}"
                       if metadata.matryoshka_dims else "no Matryoshka loss")
    prompts = st_prompts(metadata.model.prompts()) if fmt in ("st", "both") else None
    return _Job(adapter, adapter_dir, output, fmt, force, prompts, dim, resolve_export_dtype(dtype, metadata),
                resolve_device(device))


def _metadata(adapter_dir: Path) -> Any:
    from cft.modeling.metadata import AdapterMetadata

    return AdapterMetadata.load(adapter_dir)


def _staging_dir(output: Path) -> Path:
    """A temporary folder next to `output`, with the permissions a plain mkdir would give."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the export's permissions
    return staging


def _reference_embeddings(model: Any, tokenizer: Any, metadata: Any, probes: list[str],
                          device: torch.device) -> dict[str, Any]:
    """Per role (query, document), float32, no autocast: the exact embedding the adapter defines, whatever the
    training dtype."""
    from cft.modeling.encoder import TextEncoder
    from cft.modeling.prompts import ROLES

    exact = dataclasses.replace(metadata, model=dataclasses.replace(metadata.model, dtype="float32"))
    encoder = TextEncoder(model, tokenizer, exact, name="cft", revision="export", device=device)
    return {role: encoder.encode(probes, role=role) for role in ROLES}


def _write_merged(job: _Job, model: Any, tokenizer: Any, metadata: Any, staging: Path) -> Path:
    """The merged model: the hf export itself, or a scratch folder the st export is built from."""
    from cft.export.merge import merge, save_merged

    merged_dir = staging / ("hf" if job.want_hf else ".merged")
    save_merged(merge(model, job.dtype), tokenizer, metadata, merged_dir, job.adapter)
    if job.want_hf:
        _write_card(job, "hf", metadata, merged_dir)
    return merged_dir


def _write_card(job: _Job, kind: str, metadata: Any, folder: Path) -> None:
    """The folder's README.md: the model card, with the training curve copied beside it."""
    from cft.export.model_card import CardPlace, build_card, write_card

    plot = job.record.training_plot
    place = CardPlace(repo_id=job.repo_id if kind == pushed_format(job.fmt) else None)
    card = build_card(kind, metadata, job.record, place, dtype=job.dtype_name,
                      exported_from=job.adapter, prompts=job.prompts if kind == "st" else None,
                      dim=job.dim if kind == "st" else None, plot_link=TRAINING_PLOT if plot else None)
    write_card(card, folder, plot)


def _write_st(job: _Job, merged_dir: Path, tokenizer: Any, metadata: Any, st_dir: Path, probes: list[str]) -> None:
    """The sentence-transformers folder, whose tokenizer is checked to give cft's token ids."""
    from transformers import AutoTokenizer

    from cft.export.merge import save_export_metadata
    from cft.export.st_model import build_st_folder
    from cft.export.tokenizer import check_same_ids, eos_appending_tokenizer

    eos_tokenizer, _ = eos_appending_tokenizer(tokenizer, metadata.model.max_length)
    build_st_folder(merged_dir, st_dir, eos_tokenizer, metadata, job.prompts, job.dim)
    save_export_metadata(metadata, st_dir, job.adapter, job.dtype)
    _write_card(job, "st", metadata, st_dir)
    exported = AutoTokenizer.from_pretrained(str(st_dir), trust_remote_code=metadata.model.trust_remote_code)
    for prefix in sorted(set((job.prompts or {"": ""}).values())):
        check_same_ids(tokenizer, exported, metadata.model.max_length, prefix or None, probes)


def _verify(job: _Job, metadata: Any, staging: Path, reference: dict[str, Any], probes: list[str],
            result: ExportResult) -> None:
    """Each exported folder, loaded as its users would load it, must embed the probes as cft does, for queries
    (the default) and for documents."""
    from cft.modeling.embedding import truncate
    from cft.modeling.encoder import TextEncoder

    config = metadata.model
    if job.want_hf:
        hf_encoder = TextEncoder.from_base(str(staging / "hf"), pooling=config.pooling, max_length=config.max_length,
                                           prompt_template=config.prompt_template, query_template=config.query_template,
                                           document_template=config.document_template,
                                           trust_remote_code=config.trust_remote_code, dtype="float32",
                                           device=job.device)
        got = {role: hf_encoder.encode(probes, role=role) for role in reference}
        result.checks["hf"] = _compare_roles("merged Hugging Face", reference, got, job.dtype)
        del hf_encoder
    if job.want_st:
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(str(staging / "st"), device=str(job.device),
                                       trust_remote_code=config.trust_remote_code)
        # plain encode() is the query side; normalized again after truncate_dim, as cft eval --dim does
        got = {"query": st_model.encode(probes, convert_to_numpy=True, normalize_embeddings=True),
               "document": st_model.encode_document(probes, convert_to_numpy=True, normalize_embeddings=True)}
        want = {role: truncate(vectors, job.dim) if job.dim else vectors for role, vectors in reference.items()}
        got = {role: vectors.astype(np.float32) for role, vectors in got.items()}
        result.checks["st"] = _compare_roles("sentence-transformers", want, got, job.dtype)
        del st_model
    gc.collect()


def _compare_roles(what: str, reference: dict[str, Any], got: dict[str, Any], dtype: torch.dtype) -> dict[str, float]:
    """`_compare` for each role; the worst numbers of the two."""
    checks = [_compare(f"{what} ({role}s)", reference[role], got[role], dtype) for role in reference]
    return {"max_abs_diff": max(c["max_abs_diff"] for c in checks), "min_cosine": min(c["min_cosine"] for c in checks)}


def _move_into_place(job: _Job, staging: Path, result: ExportResult) -> None:
    _check_output(job.output, job.force)  # nothing appeared there meanwhile
    if job.fmt == "both":
        _replace_dir(staging, job.output)
        result.hf_dir, result.st_dir = job.output / "hf", job.output / "st"
    else:
        _replace_dir(staging / job.fmt, job.output)
        result.hf_dir = job.output if job.want_hf else None
        result.st_dir = job.output if job.want_st else None
