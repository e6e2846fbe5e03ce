"""The small file saved next to every adapter so that evaluation and export need nothing else.

Like PEFT's `adapter_config.json`, it *is* the config: the recipe's `ModelConfig` (base model, dtype, pooling, max
length, prompt template) as training used it, plus what the embedding does after pooling (EOS appended, normalized).
Reading it back guarantees that the embedding evaluated or exported is the embedding that was trained.

Format versions: 2 holds `model` (a ModelConfig); 1 (the first build) spelt the model fields out at the top level,
with `base_model` for `name_or_path`, and is still read. A key this version does not know is a warning, not silence.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cft import __version__
from cft.config import ModelConfig
from cft.errors import CFTError

logger = logging.getLogger("cft")

METADATA_FILE = "cft_metadata.json"
FORMAT_VERSION = 2
EXPORT_KEYS = ("merged", "exported_from", "export_dtype")  # added by `cft export` next to merged weights
_V1_MODEL_FIELDS = {"base_model": "name_or_path", "gguf_file": "gguf_file", "revision": "revision",
                    "trust_remote_code": "trust_remote_code", "pooling": "pooling", "max_length": "max_length",
                    "prompt_template": "prompt_template", "dtype": "dtype"}


@dataclass(init=False)
class AdapterMetadata:
    """What an adapter's embedding is: `model` (the recipe's ModelConfig) and what follows pooling."""

    model: ModelConfig = field(metadata={"help": "The base model and how a sentence becomes a vector."})
    append_eos: bool = field(default=True, metadata={"help": "EOS appended at the token-id level (always, in cft)."})
    normalize: bool = field(default=True, metadata={"help": "Embeddings are L2-normalized."})
    recipe: str | None = field(default=None, metadata={"help": "Name of the recipe that trained it."})
    run_id: str | None = field(default=None, metadata={"help": "The run that trained it."})
    matryoshka_dims: list[int] | None = field(
        default=None, metadata={"help": "Prefix sizes trained with the Matryoshka loss (loss.matryoshka_dims), if any."})
    cft_version: str = field(default=__version__, metadata={"help": "cft version that saved it."})
    format_version: int = field(default=FORMAT_VERSION, metadata={"help": "Layout of this file (see the module)."})

    def __init__(self, model: ModelConfig | None = None, *, append_eos: bool = True, normalize: bool = True,
                 recipe: str | None = None, run_id: str | None = None, matryoshka_dims: list[int] | None = None,
                 cft_version: str = __version__,
                 format_version: int = FORMAT_VERSION, **v1_model_fields: Any) -> None:
        """`v1_model_fields` (base_model=..., pooling=..., as the first build took them) build `model` when it is
        not given: first-build files read through them, and so does benchmarks/bench_eval.py until it is split."""
        unknown = sorted(set(v1_model_fields) - set(_V1_MODEL_FIELDS))
        if unknown:
            raise TypeError(f"unknown field {unknown[0]!r}")
        if model is not None and v1_model_fields:
            raise TypeError(f"give the model's fields in `model`, not as {', '.join(sorted(v1_model_fields))}")
        if model is None:
            model = ModelConfig(**{_V1_MODEL_FIELDS[key]: value for key, value in v1_model_fields.items()})
        self.model, self.append_eos, self.normalize = model, append_eos, normalize
        self.recipe, self.run_id, self.cft_version, self.format_version = recipe, run_id, cft_version, format_version
        self.matryoshka_dims = list(matryoshka_dims) if matryoshka_dims is not None else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def embedding_settings(self) -> dict[str, Any]:
        """What defines the embedding, flat and named as the first build named it: evaluation hashes it into mteb's
        cache key, so results cached by either build stay found."""
        flat = {old: getattr(self.model, new) for old, new in _V1_MODEL_FIELDS.items()}
        return {**flat, "append_eos": self.append_eos, "normalize": self.normalize, "recipe": self.recipe,
                "run_id": self.run_id, "cft_version": self.cft_version}

    def save(self, folder: str | Path) -> Path:
        """Writes the file with secret values masked, as every file a run puts in its bucket."""
        from notify.redact import redact

        path = Path(folder) / METADATA_FILE
        path.write_text(redact(json.dumps(self.to_dict(), indent=2, sort_keys=True)) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> AdapterMetadata:
        """Reads and checks the file; every problem names it, so a damaged adapter is not blamed on a recipe."""
        path = Path(folder) / METADATA_FILE
        if Path(folder).exists() and not Path(folder).is_dir():
            raise CFTError(f"{folder}: is a file; give an adapter folder saved by cft (<run>/adapter)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CFTError(f"{path}: missing; is {folder} an adapter saved by cft?") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise CFTError(f"{path}: unreadable ({error}); the adapter folder is damaged") from None
        if not isinstance(data, dict):
            raise CFTError(f"{path}: must be a JSON object (got {type(data).__name__}); the adapter folder is damaged")
        try:
            return cls.from_dict(data, str(path))
        except (CFTError, TypeError) as error:
            raise CFTError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = METADATA_FILE) -> AdapterMetadata:
        """Either format; keys this version does not know are logged (one line) and left out."""
        known = {f.name for f in fields(cls)}
        _check_types(data, _TOP_TYPES)
        if "model" in data:
            model = data["model"]
            if not isinstance(model, dict):
                raise CFTError(f"model must be an object (got {type(model).__name__})")
            _check_types(model, _MODEL_TYPES, "model.")
            _check_name(model.get("name_or_path"), "model.name_or_path")
            model_known = {f.name for f in fields(ModelConfig)}
            unknown = [f"model.{key}" for key in model if key not in model_known]
            config = ModelConfig(**{key: value for key, value in model.items() if key in model_known})
        else:  # format 1: the model's fields at the top level, read through the constructor's v1 keywords
            _check_types(data, {old: _MODEL_TYPES[new] for old, new in _V1_MODEL_FIELDS.items()})
            _check_name(data.get("base_model"), "base_model")
            known |= set(_V1_MODEL_FIELDS)
            unknown, config = [], None
        _warn_unknown(source, unknown + [key for key in data if key not in known and key not in EXPORT_KEYS])
        return cls(config, **{key: value for key, value in data.items() if key in known and key != "model"})


# field -> (type, may be null): checked before any value reaches ModelConfig, so a damaged file names its field
_MODEL_TYPES: dict[str, tuple[type, bool]] = {
    "name_or_path": (str, False), "gguf_file": (str, True), "revision": (str, True), "trust_remote_code": (bool, False),
    "dtype": (str, False), "attn_implementation": (str, True), "pooling": (str, False), "max_length": (int, False),
    "prompt_template": (str, True), "query_template": (str, True), "document_template": (str, True)}
_TOP_TYPES: dict[str, tuple[type, bool]] = {
    "append_eos": (bool, False), "normalize": (bool, False), "recipe": (str, True), "run_id": (str, True),
    "cft_version": (str, False), "format_version": (int, False), "matryoshka_dims": (list, True)}
_KIND_NAMES = {str: "a text", bool: "true or false", int: "an integer", list: "a list"}


def _check_types(values: dict[str, Any], spec: dict[str, tuple[type, bool]], prefix: str = "") -> None:
    for key, (kind, nullable) in spec.items():
        if key not in values or (values[key] is None and nullable):
            continue
        value = values[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CFTError(f"{prefix}{key} must be {_KIND_NAMES[kind]}{' or null' if nullable else ''} (got {value!r})")


def _check_name(value: Any, key: str) -> None:
    if not isinstance(value, str) or not value:
        raise CFTError(f"{key} is missing or empty; it names the base model the adapter was trained on")


def _warn_unknown(source: str, keys: list[str]) -> None:
    if keys:
        logger.warning("%s: ignoring unknown key%s %s (saved by a newer cft?)", source, "s" if len(keys) > 1 else "",
                       ", ".join(sorted(keys)))
