"""Adapter from a cft encoder to mteb 2.x's encoder protocol.

mteb hands an encoder a `DataLoader` of dicts with a "text" key, plus the task's metadata and a `prompt_type`
(`query`, `document`, or None for symmetric tasks such as STS). Our encoders take a plain list of strings, so the
adapter drains the loader, adds the retrieval instruction, encodes each distinct text once (in one call, so the
encoder can sort the whole list by length) and returns float32 numpy rows in input order. Prompt templates are
per role, as in training: queries take the query template, documents the document template, and both sides of a
symmetric task (STS) the query template, as MTEB's convention does; a cft encoder applies them itself. `dim` keeps a
Matryoshka prefix of every embedding.

mteb caches results under `<name>/<revision>/[<experiment>/]<task>.json`. The revision is the encoder's own
(`TextEncoder.revision` is a hash of the adapter weights); everything else that changes the embedding (prompt
template, instructions, the encoder's pooling/EOS/max length from its metadata) is hashed into the experiment
name, so two different models or two settings of one model never share a cache entry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from cft.errors import CFTError
from cft.modeling.embedding import truncate
from cft.modeling.prompts import PromptTemplates, apply_template, check_template

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from torch.utils.data import DataLoader

#: Pass this as an instruction to use the task's own MTEB instruction (e.g. SciFact's "Given a scientific claim,
#: retrieve documents that support or refute the claim") instead of a fixed string.
MTEB_INSTRUCTION = "mteb"

_SAFE_REVISION = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


@runtime_checkable
class Encoder(Protocol):
    """What the evaluation needs from a model: `TextEncoder` and `SentenceTransformerEncoder` both qualify.

    `encode` returns one L2-normalized float32 row per text, in input order. `revision` identifies the weights
    (e.g. a hash of the adapter). An encoder may have a `prompts` attribute (`PromptTemplates`) that its `encode`
    applies itself, given `role="query"` or `role="document"`, and a `metadata` dataclass describing how it
    embeds; both go into the cache key.
    """

    name: str
    revision: str | None

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray: ...


def _apply_instruction(instruction: str | None, text: str) -> str:
    # An instruction with "{}" is a template; otherwise it is a prefix, used verbatim (the caller chooses the
    # separator, e.g. "query: " or "Instruct: ...\nQuery: ").
    if not instruction:
        return text
    if "{}" in instruction:
        return apply_template(instruction, text)
    return instruction + text


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def _safe_revision(revision: str | None) -> str | None:
    if revision is None or revision == "":
        return None
    return revision if _SAFE_REVISION.match(revision) else f"h-{_short_hash(revision)}"


class MTEBEncoder(AbsEncoder):
    """Wraps an `Encoder` for `mteb.evaluate`.

    Args:
        encoder: anything with `encode(texts, batch_size, show_progress) -> np.ndarray`, `.name`, `.revision`.
        prompt_template: a template with one "{}" for every text (STS sentences, queries and documents), in
            place of the encoder's own `prompts` (None keeps them, "" removes them). Queries take the query
            template, documents the document template, and both sides of a symmetric task (STS, prompt type None)
            the query template, as MTEB's convention does. An encoder with a `prompts` attribute applies them
            itself (this sets the attribute); for other encoders the adapter applies them.
        dim: keep the first `dim` dimensions of every embedding, re-normalized (a Matryoshka-trained model's
            truncated embedding); None keeps them all.
        query_instruction: text put before each retrieval query (or a template with "{}"), inside the prompt
            template; `MTEB_INSTRUCTION` ("mteb") uses the task's own instruction followed by a space. STS tasks
            have no query side and get no instruction.
        document_instruction: the same for retrieval documents.
        show_progress: whether `encode` may show a progress bar; it is shown only for calls with at least
            `progress_min_texts` distinct texts, so short tasks stay quiet.

    Attributes:
        texts_encoded, encode_seconds: totals over all `encode` calls (distinct texts only), for throughput reports.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        prompt_template: str | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        dim: int | None = None,
        show_progress: bool = True,
        progress_min_texts: int = 2000,
    ) -> None:
        if not callable(getattr(encoder, "encode", None)):
            raise TypeError(f"{type(encoder).__name__} has no encode(texts, batch_size, show_progress) method")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise CFTError(f"--dim must be a number of dimensions >= 1 (got {dim!r})")
        self.model = encoder
        self.dim = dim
        self._applies_own = isinstance(getattr(encoder, "prompts", None), PromptTemplates)
        if prompt_template is not None:
            prompts = PromptTemplates.symmetric(check_template(prompt_template, "--prompt"))
        elif self._applies_own:
            prompts = encoder.prompts  # type: ignore[attr-defined]
        else:
            prompts = PromptTemplates()
        if self._applies_own:
            encoder.prompts = prompts  # type: ignore[attr-defined]
        self.prompts = prompts
        for flag, instruction in (("--query-instruction", query_instruction),
                                  ("--document-instruction", document_instruction)):
            if instruction and "{}" in instruction:  # a template, under the one rule for "{}"
                check_template(instruction, flag)
        self.query_instruction = query_instruction or None
        self.document_instruction = document_instruction or None
        self.show_progress = show_progress
        self.progress_min_texts = progress_min_texts
        self.texts_encoded = 0
        self.encode_seconds = 0.0

        name = str(getattr(encoder, "name", None) or type(encoder).__name__)
        self.revision = _safe_revision(getattr(encoder, "revision", None))
        setup = self.settings
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name,
                "revision": self.revision,
                "framework": ["PyTorch"],
                "similarity_fn_name": ScoringFunction.COSINE,
                "use_instructions": bool(self.query_instruction or self.document_instruction),
                "modalities": ["text"],
                # mteb files results under <name>/<revision>/<experiment>/: same weights with another pooling,
                # length or prompt must not reuse a cached score.
                "experiment_kwargs": {"setup": _short_hash(json.dumps(setup, sort_keys=True, default=str))}
                if any(v is not None for v in setup.values())
                else None,
            }
        )

    @property
    def name(self) -> str:
        return str(self.mteb_model_meta.name)

    @property
    def settings(self) -> dict[str, Any]:
        """Everything besides the weights that changes the embeddings: the template, instructions, and the
        encoder's embedding settings when it has `metadata` (pooling, EOS, max length, ...)."""
        out: dict[str, Any] = {
            "prompt_template": self.prompts.query,
            "query_instruction": self.query_instruction,
            "document_instruction": self.document_instruction,
        }
        # only when they differ from the symmetric case, so results cached before per-role templates stay found
        if not self.prompts.is_symmetric:
            out["document_template"] = self.prompts.document
        if self.dim is not None:
            out["dim"] = self.dim
        metadata = getattr(self.model, "metadata", None)
        if metadata is not None and hasattr(metadata, "embedding_settings"):
            volatile = {"cft_version", "run_id", "recipe", "prompt_template", "matryoshka_dims"}
            out["encoder"] = {k: v for k, v in metadata.embedding_settings().items() if k not in volatile}
        return out

    def _instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str | None:
        if prompt_type == PromptType.query:
            instruction = self.query_instruction
        elif prompt_type == PromptType.document:
            instruction = self.document_instruction
        else:
            return None
        if instruction == MTEB_INSTRUCTION:
            task_instruction = self.get_instruction(task_metadata, prompt_type)
            return f"{task_instruction} " if task_instruction else None
        return instruction

    @staticmethod
    def role(prompt_type: PromptType | None) -> str:
        """Documents are documents; queries and both sides of symmetric tasks (STS) are queries."""
        return "document" if prompt_type == PromptType.document else "query"

    def prepare_texts(
        self, texts: list[str], task_metadata: TaskMetadata, prompt_type: PromptType | None
    ) -> list[str]:
        """The strings handed to the encoder: instruction first, then the role's prompt template around it (unless
        the encoder applies its own `prompts`)."""
        instruction = self._instruction(task_metadata, prompt_type)
        template = None if self._applies_own else self.prompts.for_role(self.role(prompt_type))
        return [apply_template(template, _apply_instruction(instruction, t)) for t in texts]

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        texts = self.prepare_texts(texts, task_metadata, prompt_type)

        # STS and retrieval data repeat sentences (SICK-R: each sentence about 4 times), so encode each once.
        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(index)

        batch_size = int(kwargs.get("batch_size") or 64)
        progress = (
            self.show_progress and kwargs.get("show_progress_bar", True) and len(unique) >= self.progress_min_texts
        )
        start = time.perf_counter()
        role = {"role": self.role(prompt_type)} if self._applies_own else {}
        embeddings = self.model.encode(unique, batch_size=batch_size, show_progress=bool(progress), **role)
        self.encode_seconds += time.perf_counter() - start
        self.texts_encoded += len(unique)

        embeddings = _to_float32(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(unique):
            raise RuntimeError(
                f"{self.name}: encode() returned shape {tuple(embeddings.shape)} for {len(unique)} texts; "
                "expected (n_texts, dim)"
            )
        if not np.isfinite(embeddings).all():
            bad = int((~np.isfinite(embeddings)).any(axis=1).sum())
            raise RuntimeError(f"{self.name}: encode() returned non-finite values for {bad} of {len(unique)} texts")
        if self.dim is not None:
            embeddings = truncate(embeddings, self.dim)
        return embeddings[inverse]



def _to_float32(embeddings: Any) -> np.ndarray:
    # mteb rejects bf16 and torch tensors on a GPU; fp32 numpy is what every metric expects.
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
