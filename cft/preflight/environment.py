"""The environment the job would get, built on the laptop, and applied while the checks run.

On the node a variable the job YAML declares in `envs:` is what `sky launch --env NAME=VALUE` gave, or the shell's
`$NAME` for a bare `--env NAME`, or the YAML's default; a secret is what `--secret-file` (or `--secret NAME`, from
the shell) gave. `cft check --env` and `--secrets` take the same, so the bucket is probed with the credentials the
job will have, not with whatever `~/.aws` or a cached Hugging Face login would lend the laptop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cft.errors import CFTError

# Credentials that would mix with the secrets file's keys on the laptop but never reach the node.
AWS_SHELL_ONLY = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")
PREFLIGHT_S3_ATTEMPTS = "2"  # a preflight answers fast; a transient error costs a rerun, not a GPU hour


def parse_env_pairs(pairs: list[str] | None) -> dict[str, str | None]:
    """`--env NAME=VALUE` -> {NAME: VALUE}; a bare `--env NAME` -> {NAME: None} (the shell's value, as sky does)."""
    result: dict[str, str | None] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not name.strip() or not name.strip().replace("_", "").isalnum():
            raise CFTError(f"--env {pair}: expected NAME=VALUE (or NAME to copy it from your shell)")
        result[name.strip()] = value if sep else None
    return result


def read_secrets_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The dotenv file SkyPilot's `--secret-file` reads, parsed by the same library (python-dotenv)."""
    from dotenv import dotenv_values

    file = Path(path).expanduser()
    if not file.is_file():
        raise CFTError(f"--secrets {path}: {'is a folder' if file.is_dir() else 'file not found'}; give the dotenv "
                       "file you pass to sky launch --secret-file (docs/cloud.md shows how to write one)")
    try:
        values = dotenv_values(file)
    except (OSError, UnicodeDecodeError) as error:
        raise CFTError(f"--secrets {path}: cannot read ({type(error).__name__})") from None
    return {name: value or "" for name, value in values.items()}


def secrets_file_mode_problem(path: str | os.PathLike[str]) -> str | None:
    mode = stat.S_IMODE(Path(path).expanduser().stat().st_mode)
    if mode & 0o077:
        return f"is readable by other users (mode {mode:o}): chmod 600 {path}"
    return None


def job_environment(shell: Mapping[str, str], job_envs: Mapping[str, object], env_pairs: Mapping[str, str | None],
                    secrets: Mapping[str, str] | None, secret_names: list[str]) -> dict[str, str]:
    """The laptop's environment with the job's envs and secrets laid over it, as the node would see them."""
    env = dict(shell)
    for name, default in job_envs.items():
        if name in env_pairs:
            value = env_pairs[name] if env_pairs[name] is not None else shell.get(name, "")
        elif name in shell:
            value = shell[name]
        else:
            value = "" if default is None else str(default)
        env[name] = value
    for name, value in env_pairs.items():
        env[name] = value if value is not None else shell.get(name, "")
    if secrets is not None:
        for name in secret_names:  # a declared secret missing from the file is missing on the node too
            env.pop(name, None)
        env.update(secrets)
        if "AWS_ACCESS_KEY_ID" in secrets:
            for name in AWS_SHELL_ONLY:
                if name not in secrets:
                    env.pop(name, None)
        # The node has no ~/.aws: keys missing from the file must not be lent by the laptop's profile.
        for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            if name not in secrets:
                env[name] = os.devnull
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        if not env.get(name):
            env.pop(name, None)  # the job unsets an empty endpoint too (jobs/*.yaml `run`)
    env.setdefault("CFT_S3_ATTEMPTS", PREFLIGHT_S3_ATTEMPTS)
    return env


@contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ is `env` inside the block (boto3 and huggingface_hub read it), the laptop's again after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
