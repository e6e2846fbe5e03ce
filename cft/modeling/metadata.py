"""The small file saved next to every adapter so that evaluation and export need nothing else.

It records how the embedding was computed during training (base model, pooling, EOS handling, max length, prompt
template); reading it back guarantees that the embedding evaluated or exported is the embedding that was trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cft import __version__
from cft.errors import CFTError

METADATA_FILE = "cft_metadata.json"


@dataclass
class AdapterMetadata:
    base_model: str
    gguf_file: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    pooling: str = "last_token"
    append_eos: bool = True
    max_length: int = 128
    prompt_template: str | None = None
    normalize: bool = True
    dtype: str = "auto"
    recipe: str | None = None
    run_id: str | None = None
    cft_version: str = __version__

    def save(self, folder: str | Path) -> Path:
        """Writes the file with secret values masked, as every file a run puts in its bucket."""
        from notify.redact import redact

        path = Path(folder) / METADATA_FILE
        path.write_text(redact(json.dumps(asdict(self), indent=2, sort_keys=True)) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "AdapterMetadata":
        """Reads and checks the file; every problem names it, so a damaged adapter is not blamed on a recipe."""
        from cft.config import ModelConfig

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
        known = {f.name: f for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if not isinstance(values.get("base_model"), str) or not values["base_model"]:
            raise CFTError(f"{path}: base_model is missing or not a text; it names the model the adapter was trained on")
        expected = {"max_length": int, "trust_remote_code": bool, "append_eos": bool, "normalize": bool}
        for key, kind in expected.items():
            if key in values and (not isinstance(values[key], kind) or (kind is int and isinstance(values[key], bool))):
                raise CFTError(f"{path}: {key} must be {kind.__name__} (got {values[key]!r})")
        for key in ("gguf_file", "revision", "prompt_template", "pooling", "dtype", "recipe", "run_id"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise CFTError(f"{path}: {key} must be a text or null (got {values[key]!r})")
        metadata = cls(**values)
        try:  # the same checks as a recipe's model section
            ModelConfig(name_or_path=metadata.base_model, pooling=metadata.pooling, dtype=metadata.dtype,
                        max_length=metadata.max_length, prompt_template=metadata.prompt_template)
        except CFTError as error:
            raise CFTError(f"{path}: {str(error).replace('model.', '', 1)}") from None
        return metadata
