"""A tokenizer that appends EOS by itself, for consumers (sentence-transformers) that cannot call `tokenize_with_eos`.

cft appends EOS at the token-id level after truncating to `max_length - 1`, so the last real token is always EOS.
Here the same is expressed in the tokenizer's own files: its post-processor becomes `<its prefix> $A <its suffix>
<eos>` (keeping BOS when the tokenizer adds one), and `model_max_length` is set so that the `tokenizers` library,
which reserves room for the post-processor's tokens when truncating, cuts the content exactly where cft does.
`check_same_ids` proves it on probe texts, including ones longer than `max_length`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cft.errors import CFTError
from cft.modeling.prompts import apply_template
from cft.modeling.tokenization import tokenize_with_eos

_PROBE = "cft probe: the quick brown fox"

PROBE_TEXTS = [
    "a man is playing a guitar .",
    "",
    "x",
    "Two dogs run across the park; one of them is carrying a stick.",
    "Émile a mangé 3 croissants à 7h30 !",
]


def long_probe(max_length: int) -> str:
    """A text surely longer than `max_length` tokens, to check truncation keeps EOS last."""
    return " ".join(f"word{i} and more" for i in range(max_length * 2))


def added_special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the ids the tokenizer puts before and after a text of its own accord (e.g. [BOS], [])."""
    plain = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    full = tokenizer(_PROBE, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise CFTError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: its special tokens change the text's own "
                   "tokens, so EOS handling cannot be moved into the tokenizer; export with --format hf")


def _pieces(tokenizer: Any, ids: list[int], type_id: int) -> list[str]:
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for token in tokens:
        if any(ch.isspace() for ch in token) or ":" in token:
            raise CFTError(f"special token {token!r} cannot be written into a tokenizer template; export with --format hf")
    return [f"{token}:{type_id}" for token in tokens]


def eos_appending_tokenizer(tokenizer: Any, max_length: int) -> tuple[Any, int]:
    """A copy of `tokenizer` that ends every text with EOS as cft does. Returns (tokenizer, its model_max_length)."""
    from tokenizers import processors

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CFTError(f"tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend; export with --format hf")
    tokenizer = copy.deepcopy(tokenizer)
    backend = tokenizer.backend_tokenizer
    eos = tokenizer.eos_token_id
    prefix, suffix = added_special_tokens(tokenizer)
    if suffix and suffix[-1] == eos:
        # It adds EOS itself: cft truncates to max_length - 1 with that EOS counted, then swaps it for its own.
        new_suffix, limit = suffix, max_length - 1
    else:
        new_suffix, limit = [*suffix, eos], max_length
    single = [*_pieces(tokenizer, prefix, 0), "$A:0", *_pieces(tokenizer, new_suffix, 0)]
    pair = [*single, *_pieces(tokenizer, prefix, 1), "$B:1", *_pieces(tokenizer, new_suffix, 1)]
    ids = sorted(set(prefix + new_suffix))
    specials = [(token, token_id) for token, token_id in zip(tokenizer.convert_ids_to_tokens(ids), ids)]
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    # Truncation and padding state saved in tokenizer.json would override the caller's settings on load.
    backend.no_truncation()
    backend.no_padding()
    tokenizer.model_max_length = limit
    tokenizer.padding_side = "right"
    tokenizer.init_kwargs["padding_side"] = "right"
    # Explicit add_bos/add_eos flags make transformers rebuild the post-processor on load, discarding ours.
    for key in ("add_bos_token", "add_eos_token", "max_length", "truncation_side", "truncation_strategy", "stride"):
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer, limit


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """Saves, then strips from tokenizer_config.json the flags that would rebuild the post-processor on load."""
    import json

    tokenizer.save_pretrained(str(folder))
    config_path = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("add_bos_token", "add_eos_token", "is_local", "local_files_only"):
        config.pop(key, None)
    config["padding_side"] = "right"
    config["model_max_length"] = tokenizer.model_max_length
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_same_ids(original: Any, exported: Any, max_length: int, prompt_prefix: str | None,
                   texts: Sequence[str] | None = None) -> None:
    """Raises CFTError unless `exported` (prefix prepended, default truncation) gives cft's token ids for every text."""
    texts = list(texts) if texts is not None else [*PROBE_TEXTS, long_probe(max_length)]
    template = f"{prompt_prefix}{{}}" if prompt_prefix else None
    expected = tokenize_with_eos(original, texts, max_length, template)
    inputs = [f"{prompt_prefix or ''}{text}" for text in texts]
    got = exported(inputs, truncation=True, padding=False)["input_ids"]
    for text, want, have in zip((apply_template(template, text) for text in texts), expected, got):
        if list(want) != list(have):
            raise CFTError(f"the exported tokenizer does not reproduce cft's tokens for {text[:40]!r}: "
                           f"expected {len(want)} ids ending {list(want)[-3:]}, got {len(have)} ending {list(have)[-3:]}")
