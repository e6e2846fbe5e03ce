"""A sentence-transformers folder that computes exactly cft's embedding.

    Transformer (the merged backbone, text only, tokenizer appending EOS) -> Pooling(lasttoken | mean) -> Normalize

The modality is pinned to plain text: a chat template in the tokenizer would otherwise make sentence-transformers
wrap every sentence in chat markup. A prompt template becomes a sentence-transformers prompt, which can only be a
prefix, so templates with text after "{}" are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cft.errors import CFTError
from cft.export.tokenizer import save_tokenizer
from cft.modeling.metadata import AdapterMetadata

# cft pooling mode -> sentence-transformers Pooling mode (both read the attention mask, so either padding side works)
ST_POOLING = {"last_token": "lasttoken", "mean": "mean"}
PROMPT_NAME = "cft"
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def prompt_prefix(template: str | None) -> str | None:
    """The prefix a template puts before the sentence, or None; CFTError when it is more than a prefix."""
    if template is None or template == "{}":
        return None
    if template.count("{}") != 1:
        raise CFTError(f"prompt_template {template!r} has {template.count('{}')} '{{}}' placeholders; "
                       "sentence-transformers prompts need exactly one, at the end. Export with --format hf")
    prefix, _, suffix = template.partition("{}")
    if suffix:
        raise CFTError(f"prompt_template {template!r} puts text after the sentence ({suffix!r}); sentence-transformers "
                       "prompts can only prefix it. Export with --format hf, or train with a prefix-only template")
    return prefix


def build_st_folder(merged_dir: Path, out_dir: Path, tokenizer: Any, metadata: AdapterMetadata,
                    prefix: str | None) -> None:
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
    prompts = {PROMPT_NAME: prefix, "query": prefix, "document": prefix} if prefix else None
    model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts,
                                default_prompt_name=PROMPT_NAME if prefix else None, similarity_fn_name="cosine")
    model.save(str(out_dir), create_model_card=False)
    save_tokenizer(tokenizer, out_dir)  # again, with the flags that would rebuild the post-processor stripped
