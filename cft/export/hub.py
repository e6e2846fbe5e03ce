"""`cft export --push-to-hub OWNER/NAME`: an export (and, if asked, its adapter) on the Hub, in one commit.

    <repo root>   the sentence-transformers folder, which is also a plain transformers model (AutoModel loads it,
                  and its tokenizer appends EOS), or the merged model with --format hf; README.md is its model card
    adapter/      with --with-adapter: the PEFT adapter, its own card, and an adapter_config.json whose base another
                  machine can load (`portable_base`)

The checks that can refuse a push run before the export does (`plan_push`), so a refusal costs seconds. The token is
`HF_TOKEN` (or the one `hf auth login` saved). A repository whose main branch already holds files is replaced only
with `--force`; `--revision BRANCH` pushes to a branch instead (created from main if absent). The commit names the
head that was inspected (`parent_commit`), so a push that raced another fails rather than mixing the two, and files
of an earlier export that this one lacks are deleted in the same commit: the branch holds exactly this export.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cft.errors import CFTError
from notify.run_layout import ADAPTER_DIR, TRAINING_PLOT

MAIN = "main"
KEEP = {".gitattributes"}  # the Hub writes it into every new repository; an export never replaces or deletes it
TOKEN_HELP = "create a token with write access at https://huggingface.co/settings/tokens and export HF_TOKEN=hf_..."


@dataclass
class PushPlan:
    """What the Hub holds before the push: checked once, before the export, and used by the commit."""

    repo_id: str
    revision: str
    private: bool
    exists: bool
    branch_exists: bool
    head: str | None = None  # the commit the push builds on (None: the repository or branch is created first)
    files: list[str] = field(default_factory=list)  # files at `head`
    notes: list[str] = field(default_factory=list)  # said to the user, e.g. that --private changed nothing


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_url: str
    created: bool
    uploaded: list[str]
    deleted: list[str]


def _api() -> Any:
    from huggingface_hub import HfApi, constants, get_token

    if constants.is_offline_mode():
        raise CFTError("--push-to-hub: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set; unset it to reach the Hub")
    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise CFTError(f"--push-to-hub needs a Hub token: {TOKEN_HELP}")
    return HfApi(token=token)


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from cft.export.model_card import HUB_ID

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        pass
    else:
        if HUB_ID.match(repo_id):
            return repo_id
    raise CFTError(f"--push-to-hub {repo_id!r}: give OWNER/NAME (letters, digits, '-', '_', '.'), e.g. you/my-model")


def _hub_error(repo_id: str, what: str, error: Exception) -> CFTError:
    from huggingface_hub.errors import HfHubHTTPError

    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        return CFTError(f"--push-to-hub {repo_id}: the Hub refused to {what} (HTTP {status}); the token needs write "
                        f"access to {repo_id.split('/')[0]}: {TOKEN_HELP}")
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    kind = f"HTTP {status}" if isinstance(error, HfHubHTTPError) and status else type(error).__name__
    return CFTError(f"--push-to-hub {repo_id}: could not {what} ({kind}: {first[:300]})")


def plan_push(repo_id: str, revision: str | None = None, private: bool = False, force: bool = False) -> PushPlan:
    """Every refusal a push can meet, before any export work: bad id, no token, main holding files without --force."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    check_repo_id(repo_id)
    branch = revision or MAIN
    if not branch.strip() or branch != branch.strip():
        raise CFTError(f"--revision {revision!r}: give a branch name")
    api = _api()
    try:
        api.whoami()
    except Exception as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            raise CFTError(f"--push-to-hub: the Hub refused the token (HTTP 401, invalid token); {TOKEN_HELP}") from None
        raise _hub_error(repo_id, "check the token", error) from None
    plan = PushPlan(repo_id, branch, private, exists=True, branch_exists=True)
    try:
        info = api.repo_info(repo_id, revision=branch)
    except RevisionNotFoundError:  # a branch to create from main at push time (or an empty repository's main)
        plan.branch_exists = False
        return plan
    except RepositoryNotFoundError:
        plan.exists = plan.branch_exists = False
        return plan
    except Exception as error:  # network, HTTP: one line that says what could not be done
        raise _hub_error(repo_id, "read the repository", error) from None
    plan.head = info.sha
    plan.files = sorted(sibling.rfilename for sibling in (info.siblings or []))
    held = [name for name in plan.files if name not in KEEP]
    if branch == MAIN and held and not force:
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise CFTError(f"--push-to-hub {repo_id}: the repository exists and its main branch holds {len(held)} files "
                       f"({shown}); pass --force to replace them, or --revision BRANCH to push to a branch")
    if private and info.private is False:
        plan.notes.append(f"{repo_id} already exists and is public; --private does not change it (change it in the "
                          "repository's settings)")
    return plan


def export_files(root: Path, adapter: tuple[Path, bytes, bytes] | None = None) -> dict[str, Path | bytes]:
    """path in the repository -> local file or content: the export folder at the root, the adapter under adapter/.

    `adapter` is (adapter folder, its card, its adapter_config.json with a portable base).
    """
    files: dict[str, Path | bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files[path.relative_to(root).as_posix()] = path
    if adapter is not None:
        folder, card, config = adapter
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and not name.startswith(".") and name not in ("README.md", "adapter_config.json"):
                files[f"{ADAPTER_DIR}/{name}"] = path
        files[f"{ADAPTER_DIR}/README.md"] = card
        files[f"{ADAPTER_DIR}/adapter_config.json"] = config
    return files


def adapter_upload(adapter_dir: Path, metadata: Any, record: Any, repo_id: str) -> tuple[Path, bytes, bytes]:
    """The adapter as it goes to the Hub: its card (loading from repo_id/adapter) and a config another machine can
    follow to the base; an adapter saved before cft recorded portable bases is corrected here."""
    from cft.export.model_card import CardPlace, build_card, card_text
    from cft.modeling.source import portable_base

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = metadata.model
    config["base_model_name_or_path"], config["revision"] = portable_base(base.name_or_path, base.revision)
    plot = f"../{TRAINING_PLOT}" if record.training_plot else None
    card = build_card("adapter", metadata, record, CardPlace(repo_id=repo_id, subfolder=ADAPTER_DIR), plot_link=plot)
    return adapter_dir, card_text(card).encode("utf-8"), (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def _head(api: Any, repo_id: str, branch: str) -> tuple[str | None, list[str]]:
    """(commit, files) of a branch; (None, []) for the main branch of a repository with no commit yet."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        info = api.repo_info(repo_id, revision=branch)
    except RevisionNotFoundError:
        return None, []
    return info.sha, sorted(sibling.rfilename for sibling in (info.siblings or []))


def push(plan: PushPlan, files: dict[str, Path | bytes], message: str, description: str = "") -> PushResult:
    """One commit with every file (and the deletions of files this export lacks) on `plan.revision`."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    api = _api()
    repo_id, branch = plan.repo_id, plan.revision
    head, existing = plan.head, plan.files
    try:
        if not plan.exists:
            api.create_repo(repo_id, private=plan.private, repo_type="model")
        if not plan.branch_exists:
            if branch != MAIN:
                api.create_branch(repo_id, branch=branch)
            head, existing = _head(api, repo_id, branch)
    except HfHubHTTPError as error:
        if getattr(error.response, "status_code", None) == 409:
            raise CFTError(f"--push-to-hub {repo_id}: the repository or branch {branch} was created by someone else "
                           "since cft looked; run again to see what it holds") from None
        raise _hub_error(repo_id, f"create the repository or branch {branch}", error) from None
    except Exception as error:
        raise _hub_error(repo_id, f"create the repository or branch {branch}", error) from None
    stale = [name for name in existing if name not in files and name not in KEEP]
    operations: list[Any] = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(content) if isinstance(
        content, Path) else content) for name, content in files.items()]
    operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
    try:
        info = api.create_commit(repo_id, operations, commit_message=message, commit_description=description,
                                 revision=branch, parent_commit=head)
    except ValueError as error:  # the Hub's check of README.md's metadata, before anything is uploaded
        raise CFTError(f"--push-to-hub {repo_id}: {str(error).splitlines()[0]}") from None
    except HfHubHTTPError as error:
        if getattr(error.response, "status_code", None) in (409, 412):
            raise CFTError(f"--push-to-hub {repo_id}: {branch} moved since cft looked at it (someone pushed "
                           "meanwhile); nothing was committed; run again") from None
        raise _hub_error(repo_id, "commit", error) from None
    except Exception as error:
        raise _hub_error(repo_id, "commit", error) from None
    return PushResult(repo_id, branch, info.commit_url, not plan.exists, sorted(files), stale)
