"""A separate virtual environment holding SkyPilot, for validating jobs/*.yaml.

SkyPilot pins ``click<8.2`` while the training stack needs a newer click, so the
launcher cannot live in the project's own environment (see DESIGN.md, "Two
environments, on purpose"). The tests only need SkyPilot's YAML parser, so they
build a second venv on demand and talk to it through a subprocess.

Building is idempotent: a stamp file inside the venv records what was
installed, and a second call with the same pin returns at once. The path is
``<repo>/.venv-sky`` unless ``CFT_SKY_VENV`` names another one.

Also a script. CI builds the venv before pytest runs; the tests run the
validators with the venv's interpreter (they import ``sky`` only there)::

    python tests/sky_env.py                      # build if absent, print its python
    .venv-sky/bin/python tests/sky_env.py validate-task jobs/train.yaml [KEY=VAL ...]
    .venv-sky/bin/python tests/sky_env.py validate-config sky/config.yaml
    .venv-sky/bin/python tests/sky_env.py resolve-secrets jobs/train.yaml BUCKET=... secret:NAME=VAL ...

The validators print one line ``CFT_SKY_RESULT <json>`` and exit 0, or
``CFT_SKY_ERROR <message>`` and exit 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

SKYPILOT_PIN = "skypilot==0.14.1"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO_ROOT / ".venv-sky"
_STAMP = "cft-sky-stamp.txt"


def sky_venv_path() -> Path:
    """Where the SkyPilot venv lives: ``$CFT_SKY_VENV`` or ``<repo>/.venv-sky``."""
    return Path(os.environ.get("CFT_SKY_VENV") or DEFAULT_VENV).resolve()


def _python_of(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextlib.contextmanager
def _lock(path: Path):
    # Two pytest workers (or CI and a developer) must not pip install into the
    # same venv at once. The lock file lives in the temp folder, keyed by the
    # venv's path, so it never shows up as an untracked file in the repo.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    lock_file = Path(tempfile.gettempdir()) / f"cft-sky-venv-{digest}.lock"
    with open(lock_file, "w") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking, best effort
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_sky_venv(path: Path | str | None = None, quiet: bool = True) -> Path:
    """Create the SkyPilot venv if it is missing or stale; return its python.

    Args:
        path: venv folder; defaults to :func:`sky_venv_path`.
        quiet: pass ``-q`` to pip.

    Raises:
        subprocess.CalledProcessError: the install failed (e.g. no network).
    """
    path = Path(path).resolve() if path else sky_venv_path()
    python = _python_of(path)
    stamp = path / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text().strip() == SKYPILOT_PIN:
        return python
    with _lock(path):
        # Someone else may have finished the build while we waited.
        if python.exists() and stamp.exists() and stamp.read_text().strip() == SKYPILOT_PIN:
            return python
        if not python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(path)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        if quiet:
            pip.append("-q")
        subprocess.run([*pip, SKYPILOT_PIN], check=True)
        stamp.write_text(SKYPILOT_PIN + "\n")
    return python


# ---------------------------------------------------------------------------
# The job YAMLs as plain data, for tests that need no SkyPilot.

JOBS_DIR = REPO_ROOT / "jobs"
JOB_FILES = ("train.yaml", "eval.yaml", "pipeline.yaml")


def is_pipeline_header(doc: dict) -> bool:
    """SkyPilot's rule: a first document with only ``name`` (and ``execution``)."""
    return set(doc) in ({"name"}, {"name", "execution"})


def job_tasks(file_name: str) -> list[dict]:
    """The task documents of ``jobs/<file_name>``, a pipeline's header left out."""
    import yaml

    with open(JOBS_DIR / file_name, encoding="utf-8") as fh:
        docs = [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    if len(docs) > 1 and is_pipeline_header(docs[0]):
        docs = docs[1:]
    return docs


# ---------------------------------------------------------------------------
# Validators: these run inside the SkyPilot venv (``import sky`` works there).

RESULT_MARK = "CFT_SKY_RESULT "
ERROR_MARK = "CFT_SKY_ERROR "


def _ordered_if_list(resources, describe) -> list:
    described = [describe(r) for r in resources]
    return described if isinstance(resources, list) else sorted(described, key=repr)


def _validate_task_yaml(path: str, env_overrides: list[tuple[str, str]]) -> dict:
    """Parse ``path`` as ``sky launch`` / ``sky jobs launch`` do and validate it.

    ``load_chain_dag_from_yaml`` checks every document against SkyPilot's task
    schema and each ``resources:`` block (``any_of`` candidates included)
    against its resources schema. ``Task.validate`` would also check accelerator
    names against the cloud catalog, which SkyPilot downloads from GitHub, so
    only its offline parts run here: name, run, workdir and file mounts.
    """
    from sky.utils import dag_utils

    dag = dag_utils.load_chain_dag_from_yaml(path, env_overrides=env_overrides or None)
    tasks = []
    for task in dag.tasks:
        task.validate_name()
        task.validate_run()
        task.expand_and_validate_workdir()
        task.expand_and_validate_file_mounts()
        tasks.append(
            {
                "name": task.name,
                "num_nodes": task.num_nodes,
                "envs": dict(task.envs),
                "inline_secrets": sorted(task.secrets),
                "empty_secrets": sorted(k for k, v in task.secrets.items() if not v.get_secret_value()),
                "secret_refs": sorted(ref.name for ref in task.managed_secret_refs),
                # SkyPilot keeps `ordered` candidates as a list, tried in
                # order, and `any_of` ones as a set, of which the optimizer
                # takes the cheapest: report which, and keep a list's order.
                "resources_ordered": isinstance(task.resources, list),
                "resources": _ordered_if_list(
                    task.resources,
                    lambda r: {
                        "cloud": str(r.cloud) if r.cloud else None,
                        "accelerators": r.accelerators,
                        "use_spot": r.use_spot,
                        "disk_size": r.disk_size,
                        "job_recovery": r.job_recovery,
                    },
                ),
                "setup": task.setup,
                "run": task.run,
                "event_callback": task.event_callback,
                "workdir": task.workdir,
            }
        )
    return {"dag_name": dag.name, "tasks": tasks}


def _resolve_secrets(path: str, env_overrides: list[tuple[str, str]], secrets: list[tuple[str, str]]) -> dict:
    """Load ``path`` with ``--secret`` values and run SkyPilot's own secret check.

    ``sky.execution.launch`` (``sky launch``, ``--dryrun`` included) calls
    ``_resolve_managed_secrets`` before it provisions anything; it raises for a
    null secret that got no value. ``sky jobs launch`` leaves that check to the
    jobs controller, which is why the docs run ``sky launch --dryrun`` first.
    """
    from sky import execution
    from sky.utils import dag_utils

    dag = dag_utils.load_chain_dag_from_yaml(
        path, env_overrides=env_overrides or None, secret_overrides=secrets or None
    )
    execution._resolve_managed_secrets(dag)  # noqa: SLF001 - the check itself, no cloud involved
    return {"tasks": [sorted(task.secrets) for task in dag.tasks]}


def _validate_config_yaml(path: str) -> dict:
    """Validate a SkyPilot config file as SkyPilot loads ``~/.sky/config.yaml``."""
    import yaml
    from sky import skypilot_config
    from sky.utils import common_utils, schemas

    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a SkyPilot config must be a mapping")
    # The same call SkyPilot makes on every config source it reads.
    common_utils.validate_schema(
        config, schemas.get_config_schema(), f"Invalid config YAML ({path}): ", skip_none=False
    )
    # And the real loading path: the file as the global config.
    os.environ[skypilot_config.ENV_VAR_GLOBAL_CONFIG] = os.path.abspath(path)
    skypilot_config.reload_config()
    return {"config": skypilot_config.to_dict()}


def _serve_task_scripts() -> int:
    """One JSON line in (``{"codegen", "env_vars"}``), one out (``{"script"}``), until stdin closes.

    The script is SkyPilot's own (``sky.skylet.log_lib.make_task_bash_script``): it sources ~/.bashrc, exports
    the envs one by one and changes into ~/sky_workdir, as a node does before a task's setup and run. A server,
    so that the node emulation pays SkyPilot's import once per test session.
    """
    import json

    from sky.skylet import log_lib

    for line in sys.stdin:
        request = json.loads(line)
        script = log_lib.make_task_bash_script(request["codegen"], env_vars=request["env_vars"])
        print(json.dumps({"script": script}), flush=True)
    return 0


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-v", "build"):
        print(ensure_sky_venv(quiet="-v" not in argv))
        return 0
    if argv[0] == "serve-task-scripts":
        return _serve_task_scripts()
    import json

    command, path, rest = argv[0], argv[1], argv[2:]
    try:
        if command == "validate-task":
            result = _validate_task_yaml(path, [tuple(kv.split("=", 1)) for kv in rest])
        elif command == "resolve-secrets":
            pairs = [tuple(kv.split("=", 1)) for kv in rest]
            result = _resolve_secrets(
                path,
                [(k, v) for k, v in pairs if not k.startswith("secret:")],
                [(k[len("secret:"):], v) for k, v in pairs if k.startswith("secret:")],
            )
        elif command == "validate-config":
            result = _validate_config_yaml(path)
        else:
            print(f"{ERROR_MARK}unknown command {command!r}")
            return 2
    except Exception as exc:  # noqa: BLE001 - report any parser error as a test result
        print(f"{ERROR_MARK}{type(exc).__name__}: {exc}".replace("\n", " "))
        return 1
    print(RESULT_MARK + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
