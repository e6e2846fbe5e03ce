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
        path = Path(folder) / METADATA_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CFTError(f"{path}: missing; is {folder} an adapter saved by cft?") from None
        except (OSError, json.JSONDecodeError) as error:
            raise CFTError(f"{path}: unreadable ({error})") from None
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
