"""The recipe's model, where the node will look for it: the embedded GGUF, a file in the workdir, or the Hub."""

from __future__ import annotations

from pathlib import Path

from cft.config import ModelConfig
from cft.errors import CFTError
from cft.modeling.source import EMBEDDED_MODELS, resolve_source
import cft.preflight.hub as hub
from cft.preflight.job import JobSpec, node_problem
from cft.preflight.result import CheckFailed


def check(config: ModelConfig, job: JobSpec) -> str:
    name = config.name_or_path
    if name in EMBEDDED_MODELS:
        return _embedded(config, job)
    try:
        source, gguf = resolve_source(name, config.gguf_file)
    except CFTError as error:
        raise CheckFailed(f"model.name_or_path {error}") from None
    path = Path(source).expanduser()
    if path.exists():
        problem = node_problem(path / gguf if gguf else path, job.workdir)
        if problem:
            raise CheckFailed(f"model.name_or_path {name} {problem}")
        return f"{name}: a local model, in the workdir the job syncs"
    return _on_hub(config)


def _embedded(config: ModelConfig, job: JobSpec) -> str:
    name = config.name_or_path
    _, package = EMBEDDED_MODELS[name]
    try:
        folder, gguf = resolve_source(name, config.gguf_file)
    except CFTError as error:
        raise CheckFailed(str(error)) from None
    if package not in job.setup:
        raise CheckFailed(f"{name} is installed here ({Path(folder) / str(gguf)}), but {job.path}'s setup does not "
                          f"install {package}, so the node will not have it; use a hub id in the recipe")
    return f"{name}: installed here, and {job.path}'s setup installs {package}"


def _on_hub(config: ModelConfig) -> str:
    name, revision = config.name_or_path, config.revision
    hub.require_online(f"model {name}")
    try:
        info = hub.api().model_info(name, revision=revision, timeout=hub.TIMEOUT_S)
    except Exception as error:  # the Hub's own error types, or a network error of the HTTP client
        raise hub.explain(error, name, revision=revision) from None
    files = sorted(sibling.rfilename for sibling in info.siblings or [])
    wanted = config.gguf_file or "config.json"
    if wanted not in files:
        shown = ", ".join(files[:8]) + (" ..." if len(files) > 8 else "")
        raise CheckFailed(f"model {name}{'@' + revision if revision else ''} has no {wanted} on {hub.endpoint()} "
                          f"(files: {shown or 'none'}); from_pretrained needs it")
    try:
        meta = hub.file_metadata(name, wanted, revision=revision)
    except Exception as error:
        raise hub.explain(error, name, revision=revision) from None
    gated = f"gated ({info.gated}), licence accepted for HF_TOKEN's account; " if info.gated else ""
    return (f"{name}: {len(files)} files listed on {hub.endpoint()}; {gated}{wanted} downloadable "
            f"({hub.human_size(meta.size)})")
