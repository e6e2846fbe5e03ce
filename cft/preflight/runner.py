"""Runs the checks in the job's environment and times each; the CLI prints what comes back.

The recipe loads first (the model and data checks need it); the others run side by side, so the whole preflight
takes about as long as its slowest check (usually `sky check`). Every line is redacted with the secrets' values
before it leaves, although no check puts one there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cft.config import Recipe, load_recipe
from cft.errors import CFTError, one_line
from cft.overrides import ENV_NAME as OVERRIDES_ENV
from cft.overrides import split_overrides
from cft.preflight import environment
from cft.preflight.job import JobSpec, load_job, node_problem
from cft.preflight.result import FAIL, OK, SKIP, CheckFailed, CheckResult, CheckSkipped
from notify.redact import text_redactor

CHECK_NAMES = ("secrets", "bucket", "recipe", "model", "data", "ntfy", "sky")
DEFAULT_JOB = "jobs/train.yaml"


@dataclass
class PreflightOptions:
    job: str = DEFAULT_JOB
    bucket: str | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    secrets_file: str | None = None
    env_pairs: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)


@dataclass
class Preflight:
    """What the checks share: the job, its environment, and the recipe once it has loaded."""

    job: JobSpec
    laptop_env: dict[str, str]
    env: dict[str, str]
    secret_values: dict[str, str]
    secrets_file: Path | None
    bucket_root: str | None
    recipe_path: str | None
    overrides: list[str]
    recipe: Recipe | None = None


def prepare(options: PreflightOptions) -> Preflight:
    """Reads the job, the `--env` pairs and the secrets file; CFTError (exit 2) when one of them is unusable."""
    job = load_job(options.job)
    shell = dict(os.environ)
    pairs = environment.parse_env_pairs(options.env_pairs)
    file = Path(options.secrets_file).expanduser() if options.secrets_file else None
    secrets = environment.read_secrets_file(file) if file else None
    env = environment.job_environment(shell, job.envs, pairs, secrets, list(job.secrets))
    values = secrets if secrets is not None else {name: shell[name] for name in job.secrets if name in shell}
    bucket = options.bucket or env.get("BUCKET") or None
    recipe_path = options.config or (env.get("RECIPE") if "RECIPE" in job.envs or "RECIPE" in pairs else None)
    overrides = _job_overrides(env, job, pairs) + list(options.overrides)
    return Preflight(job, shell, env, values, file, bucket, recipe_path, overrides)


def _job_overrides(env: dict[str, str], job: JobSpec, pairs: dict[str, str | None]) -> list[str]:
    """The job's `OVERRIDES` env, when it takes one: `--set` pairs as one string of shell words, as the job reads it."""
    if OVERRIDES_ENV not in job.envs and OVERRIDES_ENV not in pairs:
        return []
    return split_overrides(env.get(OVERRIDES_ENV) or "", source=f"--env {OVERRIDES_ENV}")


def _check_recipe(state: Preflight) -> str:
    if not state.recipe_path:
        raise CheckSkipped(f"{state.job.path} takes no recipe (no RECIPE in its envs) and no --config was given")
    try:
        state.recipe = load_recipe(state.recipe_path, state.overrides)
    except CFTError as error:
        raise CheckFailed(str(error)) from None
    problem = node_problem(Path(state.recipe_path), state.job.workdir)
    if problem:
        raise CheckFailed(f"recipe {state.recipe_path} {problem}")
    sets = f" with {len(state.overrides)} --set override(s)" if state.overrides else ""
    model, data = state.recipe.model.name_or_path, state.recipe.data.train_file or "(none)"
    return f"{state.recipe_path} loads{sets}: model {model}, data {data}"


def _needs_recipe(state: Preflight, what: str) -> Recipe:
    if state.recipe is None:
        raise CheckSkipped(f"no recipe loaded, so no {what} to check")
    return state.recipe


def _check_model(state: Preflight) -> str:
    """The recipe's model; for an evaluation job (no recipe, an ADAPTER env), the adapter and its base model."""
    import cft.preflight.adapter as adapter
    import cft.preflight.model as model

    if state.recipe is None and not state.recipe_path and adapter.ADAPTER_ENV in state.job.envs:
        return adapter.check(state.env, state.bucket_root, state.job)
    return model.check(_needs_recipe(state, "model").model, state.job)


def _check_data(state: Preflight) -> str:
    import cft.preflight.adapter as adapter
    import cft.preflight.data as data

    if state.recipe is None and not state.recipe_path and adapter.ADAPTER_ENV in state.job.envs:
        raise CheckSkipped(f"{state.job.path} evaluates on MTEB tasks, whose data mteb fetches itself (not checked)")
    return data.check(_needs_recipe(state, "data").data, state.job)


def _checks(state: Preflight) -> dict[str, Callable[[], str]]:
    import cft.preflight.bucket as bucket
    import cft.preflight.ntfy as ntfy
    import cft.preflight.secrets as secrets
    import cft.preflight.sky as sky

    job_name = str(state.job.path)
    return {
        "secrets": lambda: secrets.check(state.job, state.secret_values, state.secrets_file),
        "bucket": lambda: bucket.check(state.bucket_root, job_name),
        "recipe": lambda: _check_recipe(state),
        "model": lambda: _check_model(state),
        "data": lambda: _check_data(state),
        "ntfy": lambda: ntfy.check(job_name),
        "sky": lambda: sky.check(state.job, state.laptop_env),
    }


def _run_one(name: str, check: Callable[[], str], redact: Callable[[str], str]) -> CheckResult:
    start = time.monotonic()
    try:
        status, detail = OK, check()
    except CheckSkipped as skipped:
        status, detail = SKIP, str(skipped)
    except (CheckFailed, CFTError) as failed:
        status, detail = FAIL, str(failed)
    except ImportError as missing:  # a light install (no `train` extra) has neither boto3 nor huggingface_hub
        status, detail = FAIL, f"needs the {missing.name} package, part of the `train` extra: pip install -e '.[train]'"
    except Exception as error:  # a bug in a check must not hide the others' answers
        status, detail = FAIL, f"unexpected {type(error).__name__}: {one_line(str(error))[:200]} (a bug in cft check)"
    return CheckResult(name, status, redact(one_line(detail)), time.monotonic() - start)


def run_checks(options: PreflightOptions) -> Iterator[CheckResult]:
    """Yields one result per check, in CHECK_NAMES order, each as soon as it and those before it are done."""
    state = prepare(options)
    redact = text_redactor({**state.env, **{f"SECRET_{n}": v for n, v in state.secret_values.items()}})
    checks = _checks(state)
    skipped = set(options.skip)
    with environment.applied(state.env):
        if "recipe" in skipped:
            recipe = CheckResult("recipe", SKIP, "skipped (--skip recipe)")
        else:
            recipe = _run_one("recipe", checks["recipe"], redact)
        pool = ThreadPoolExecutor(max_workers=len(CHECK_NAMES))
        try:
            futures: dict[str, Future[CheckResult]] = {
                name: pool.submit(_run_one, name, checks[name], redact)
                for name in CHECK_NAMES if name != "recipe" and name not in skipped
            }
            for name in CHECK_NAMES:
                if name == "recipe":
                    yield recipe
                elif name in skipped:
                    yield CheckResult(name, SKIP, f"skipped (--skip {name})")
                else:
                    yield futures[name].result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C does not wait for a slow `sky check`


def summary(results: list[CheckResult], seconds: float) -> str:
    counts = {status: sum(r.status == status for r in results) for status in (OK, FAIL, SKIP)}
    verdict = "all checks passed" if not counts[FAIL] else f"{counts[FAIL]} check(s) failed"
    return f"{verdict} ({counts[OK]} ok, {counts[FAIL]} failed, {counts[SKIP]} skipped) in {seconds:.1f}s"
