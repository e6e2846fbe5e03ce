"""A SkyPilot job YAML read as plain data: the envs it takes, the secrets it needs, the clouds it asks for.

No SkyPilot here: `cft check` runs in the training environment, SkyPilot lives in its own (see `sky`). What is read
is what SkyPilot itself reads from these keys: a pipeline's first document holds only `name` (and `execution`);
`resources` names a cloud in `infra` (`lambda`, `aws/us-east-1`, `k8s/<context>`) or `cloud`, directly or in each
candidate of `ordered` / `any_of`; a secret whose value is null must be given at launch, "" is optional.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cft.errors import CFTError

CLOUD_ALIASES = {"k8s": "kubernetes"}


@dataclass
class JobSpec:
    path: Path
    workdir: Path
    envs: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str | None] = field(default_factory=dict)  # None = required at launch
    clouds: list[str] = field(default_factory=list)
    setup: str = ""
    pipeline: bool = False

    @property
    def required_secrets(self) -> list[str]:
        return [name for name, default in self.secrets.items() if default is None]

    @property
    def optional_secrets(self) -> list[str]:
        return [name for name, default in self.secrets.items() if default is not None]

    def controller_cloud(self, env: dict[str, str]) -> str | None:
        """The managed-jobs controller's cloud from the SkyPilot config the docs export, if any."""
        config = Path(env.get("SKYPILOT_PROJECT_CONFIG") or self.workdir / "sky" / "config.yaml")
        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            resources = data["jobs"]["controller"]["resources"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None
        return _cloud_of(resources)


def _cloud_of(resources: Any) -> str | None:
    if not isinstance(resources, dict):
        return None
    value = resources.get("infra") or resources.get("cloud")
    if not value:
        return None
    name = str(value).split("/", 1)[0].strip().lower()
    return CLOUD_ALIASES.get(name, name)


def _clouds(resources: Any) -> list[str]:
    if not isinstance(resources, dict):
        return []
    candidates = [resources]
    for key in ("ordered", "any_of"):
        if isinstance(resources.get(key), list):
            candidates += resources[key]
    return [cloud for cloud in (_cloud_of(candidate) for candidate in candidates) if cloud]


def is_pipeline_header(doc: dict[str, Any]) -> bool:
    return set(doc) in ({"name"}, {"name", "execution"})


def workdir_of(path: Path) -> Path:
    """The repository that holds the job file: the job's `workdir: .` when launched from its root, as documented."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=10)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return path.resolve().parent.parent


def load_job(path: str | os.PathLike[str]) -> JobSpec:
    """Reads `jobs/<name>.yaml` (one task or a pipeline); CFTError naming the file when it is not a job."""
    job_path = Path(path)
    try:
        docs = [doc for doc in yaml.safe_load_all(job_path.read_text(encoding="utf-8")) if doc is not None]
    except FileNotFoundError:
        raise CFTError(f"--job {path}: file not found; give a SkyPilot task YAML such as jobs/train.yaml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CFTError(f"--job {path}: cannot read ({error})") from None
    except yaml.YAMLError as error:
        raise CFTError(f"--job {path}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not docs or not all(isinstance(doc, dict) for doc in docs):
        raise CFTError(f"--job {path}: not a SkyPilot task YAML (a mapping with envs, secrets, resources, run)")
    pipeline = len(docs) > 1 and is_pipeline_header(docs[0])
    tasks = docs[1:] if pipeline else docs
    spec = JobSpec(path=job_path, workdir=workdir_of(job_path.resolve()), pipeline=pipeline)
    for task in tasks:
        for key in ("envs", "secrets"):
            if not isinstance(task.get(key) or {}, dict):
                raise CFTError(f"--job {path}: `{key}` must be a mapping of NAME: value (got {type(task[key]).__name__})")
        for name, value in (task.get("envs") or {}).items():
            spec.envs.setdefault(str(name), value)
        for name, value in (task.get("secrets") or {}).items():
            required = value is None or spec.secrets.get(str(name), "") is None
            spec.secrets[str(name)] = None if required else str(value)
        for cloud in _clouds(task.get("resources")):
            if cloud not in spec.clouds:
                spec.clouds.append(cloud)
        spec.setup += str(task.get("setup") or "") + "\n"
    return spec


def node_problem(path: Path, workdir: Path) -> str | None:
    """Why a local file would not be on the node (outside the workdir, or git-ignored so SkyPilot skips it), or None."""
    target = path.expanduser().resolve()
    root = workdir.resolve()
    if not target.is_relative_to(root):
        return (f"is outside the job's workdir {root}: the node gets only the workdir; copy it into the repository "
                "(not git-ignored)")
    if (root / ".skyignore").is_file():
        return None  # SkyPilot then reads .skyignore instead of .gitignore; not second-guessed here
    try:
        done = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(target)], capture_output=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode == 0:
        return "is git-ignored, and SkyPilot does not sync ignored files to the node; un-ignore it or move it"
    return None
