"""The Hugging Face Hub as the job will meet it: its endpoint (`HF_ENDPOINT`), its token (`HF_TOKEN`, or none).

The token is the job's, never the laptop's cached login (`token=False` when `HF_TOKEN` is not given), since the node
has no cached login. Requests are the ones a download makes first: the repository's file list, then a HEAD of one
file, which is where a gated repository answers 401 (no token) or 403 (licence not accepted) with its reason.
"""

from __future__ import annotations

import os
from typing import Any

from cft.errors import one_line
from cft.preflight.result import CheckFailed

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 10.0


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | bool:
    return os.environ.get("HF_TOKEN") or False


def require_online(what: str) -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise CheckFailed(f"{what}: HF_HUB_OFFLINE is set, so the Hub was not asked; unset it (the job needs the Hub)")


def api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token())


def file_metadata(repo_id: str, filename: str, repo_type: str | None = None, revision: str | None = None) -> Any:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint())
    return get_hf_file_metadata(url, token=token(), timeout=TIMEOUT_S)


def page_url(repo_id: str, repo_type: str | None = None) -> str:
    return f"{endpoint()}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def explain(error: Exception, repo_id: str, repo_type: str | None = None, revision: str | None = None) -> CheckFailed:
    """One line for what the Hub answered: missing, gated (no token / licence not accepted), unreachable."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    kind = "dataset" if repo_type == "dataset" else "model"
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    reason = one_line((response.headers.get("X-Error-Message") if response is not None else None) or "")
    said = f" (the Hub says: {reason})" if reason else ""
    if isinstance(error, HFValidationError):
        return CheckFailed(f"{repo_id!r} is not a valid {kind} id on the Hub (owner/name): "
                           f"{one_line(str(error))[:160]}")
    if isinstance(error, GatedRepoError):
        if not token():
            return CheckFailed(f"{kind} {repo_id} is gated and no HF_TOKEN is given: put HF_TOKEN in the secrets "
                               f"file, and accept the licence at {page_url(repo_id, repo_type)} with its account")
        return CheckFailed(f"{kind} {repo_id} is gated and the licence is not accepted for HF_TOKEN's account "
                           f"({status}){said}: accept it at {page_url(repo_id, repo_type)}")
    if isinstance(error, RevisionNotFoundError):
        return CheckFailed(f"{kind} {repo_id} has no revision {revision!r} on {endpoint()}")
    if isinstance(error, RemoteEntryNotFoundError):
        return CheckFailed(f"{kind} {repo_id}: {one_line(str(error))[:200]}")
    if isinstance(error, RepositoryNotFoundError):
        private = " or is private and HF_TOKEN cannot see it" if token() else " (or is private: give HF_TOKEN)"
        return CheckFailed(f"{kind} {repo_id} is not on {endpoint()}{private}: check the name")
    if isinstance(error, HfHubHTTPError):
        return CheckFailed(f"{kind} {repo_id}: {endpoint()} answered HTTP {status}{said}")
    return CheckFailed(f"cannot reach {endpoint()} for {kind} {repo_id} ({type(error).__name__}: "
                       f"{one_line(str(error))[:160]}); check the network or HF_ENDPOINT")


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
