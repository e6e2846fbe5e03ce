"""A sentence-transformers folder that computes exactly cft's embedding.

    Transformer (the merged backbone, text only, tokenizer appending EOS) -> Pooling(lasttoken | mean) -> Normalize

The modality is pinned to plain text: a chat template in the tokenizer would otherwise make sentence-transformers
wrap every sentence in chat markup. The query and document templates become the sentence-transformers prompts
"query" and "document" (a prompt can only be a prefix, so templates with text after "{}" are refused), and a
Matryoshka truncation becomes `truncate_dim`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cft.errors import CFTError
from cft.export.tokenizer import save_tokenizer
from cft.modeling.metadata import AdapterMetadata
from cft.modeling.prompts import ROLES, PromptTemplates, template_prefix

# cft pooling mode -> sentence-transformers Pooling mode (both read the attention mask, so either padding side works)
ST_POOLING = {"last_token": "lasttoken", "mean": "mean"}
PROMPT_NAME = "cft"
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def st_prompts(prompts: PromptTemplates) -> dict[str, str] | None:
    """sentence-transformers `prompts` from the training templates: "query" and "document" (what
    `encode_query` / `encode_document` use), plus "cft" for a template both roles share; None without templates.
    CFTError when a template is more than a prefix."""
    if prompts.query is None and prompts.document is None:
        return None
    prefixes = {role: template_prefix(prompts.for_role(role), f"model.{role}_template") for role in ROLES}
    if prompts.is_symmetric:
        return {PROMPT_NAME: prefixes["query"], **prefixes}
    return prefixes


def default_prompt_name(prompts: dict[str, str] | None) -> str | None:
    """What plain `encode()` uses: the shared prompt, else the query's (symmetric tasks embed both sides as
    queries)."""
    if not prompts:
        return None
    return PROMPT_NAME if PROMPT_NAME in prompts else "query"


def build_st_folder(merged_dir: Path, out_dir: Path, tokenizer: Any, metadata: AdapterMetadata,
                    prompts: dict[str, str] | None, truncate_dim: int | None = None) -> None:
    """Writes the sentence-transformers folder for the merged model in `merged_dir`, with `tokenizer` (EOS-appending)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if metadata.model.pooling not in ST_POOLING:
        raise CFTError(f"pooling {metadata.model.pooling!r} has no sentence-transformers equivalent "
                       f"(supported: {', '.join(ST_POOLING)}); export with --format hf")
    remote = {"trust_remote_code": True} if metadata.model.trust_remote_code else {}
    transformer = Transformer(
        str(merged_dir),
        model_kwargs={"dtype": "auto", **remote},
        config_kwargs=dict(remote),
        processor_kwargs=dict(remote),
        modality_config=TEXT_ONLY,
        module_output_name="token_embeddings",
    )
    # The module loaded the plain tokenizer from merged_dir; it saves (and will load) the EOS-appending one.
    transformer.processor = tokenizer
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=ST_POOLING[metadata.model.pooling])]
    if metadata.normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts,
                                default_prompt_name=default_prompt_name(prompts), similarity_fn_name="cosine",
                                truncate_dim=truncate_dim)
    model.save(str(out_dir), create_model_card=False)
    save_tokenizer(tokenizer, out_dir)  # again, with the flags that would rebuild the post-processor stripped
