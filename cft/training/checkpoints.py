"""A run's checkpoints: which are complete, which one to resume from, how to fetch it, which to keep.

    <run>/checkpoints/checkpoint-<step>/...files...   then   _COMPLETE (written last)

A checkpoint counts only when its marker was written after its data: in the bucket (the marker is uploaded last),
in a local copy (downloaded last, into a staging folder renamed into place) and in retention (an older complete
checkpoint is deleted only once its successor is complete). A complete checkpoint is still verified before a run
resumes from it (every file the Trainer reads on resume must load), so one damaged checkpoint costs the steps since
the one before it, not the run.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cft.storage.bucket import Bucket
from notify.run_layout import COMPLETE_MARKER, RunPaths, checkpoint_name, checkpoint_step

logger = logging.getLogger("cft")

# What the Trainer reads to resume a PEFT model: weights, optimizer, scheduler and the step counter.
REQUIRED_FILES = ("adapter_model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt")


class DamagedCheckpoint(Exception):
    """A complete checkpoint whose files cannot be resumed from; the message says which file and why."""


@dataclass
class ResumePoint:
    """The checkpoint to resume from (None: from scratch) and the newer ones that were skipped, with why."""

    folder: Path | None
    step: int | None
    skipped: list[str] = field(default_factory=list)

    def describe(self, run_id: str) -> str:
        why = f" ({'; '.join(self.skipped)})" if self.skipped else ""
        if self.folder is None:
            return f"run {run_id}: no usable checkpoint{why}; starting from step 0"
        skipped = f", skipping damaged {why.strip()}" if self.skipped else ""
        return f"run {run_id} resumed from checkpoint step {self.step}{skipped}"


def complete_checkpoints(bucket: Bucket, paths: RunPaths) -> list[tuple[int, str]]:
    """(step, name) of checkpoints in the bucket whose marker exists, oldest first."""
    base = f"{paths.checkpoints}/"
    found = []
    for key in bucket.list_keys(base):
        parts = key[len(base):].split("/")
        if len(parts) == 2 and parts[1] == COMPLETE_MARKER and checkpoint_step(parts[0]) is not None:
            found.append((checkpoint_step(parts[0]), parts[0]))
    return sorted(found)


def verify_checkpoint(folder: Path, step: int) -> None:
    """Raises DamagedCheckpoint unless every file the Trainer reads on resume is there and loads."""
    import torch
    from safetensors.torch import load_file
    from transformers.trainer_pt_utils import safe_globals  # the numpy types the Trainer allows in rng_state.pth

    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise DamagedCheckpoint(f"{folder.name}: {', '.join(missing)} missing")
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".pt", ".pth"):
                with safe_globals():
                    torch.load(path, map_location="cpu", weights_only=True)  # as the Trainer loads them
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as error:  # truncated zip, bad header, bad JSON: each library has its own types
            raise DamagedCheckpoint(f"{folder.name}/{path.name} does not load ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0][:120] if str(error) else ''})") from None
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    if not isinstance(state, dict) or state.get("global_step") != step:
        got = state.get("global_step") if isinstance(state, dict) else None
        raise DamagedCheckpoint(f"{folder.name}/trainer_state.json says step {got}, not {step}")


def fetch_checkpoint(bucket: Bucket, paths: RunPaths, name: str, local: Path, refresh: bool = False) -> Path:
    """A local folder holding a complete checkpoint: the bucket's own when it is local, else a whole copy.

    A copy is made in a staging folder, marker last, and renamed into place, so `local` never holds half a
    checkpoint; a copy already there is reused only when its marker (the last file written) is there.
    """
    prefix = paths.checkpoint(name)
    in_bucket = bucket.local_path(prefix)
    if in_bucket is not None:
        return in_bucket
    if not refresh and (local / COMPLETE_MARKER).is_file():
        return local
    staging = local.with_name(f".{local.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed download left
    bucket.download_dir(prefix, staging, marker=COMPLETE_MARKER)
    shutil.rmtree(local, ignore_errors=True)
    staging.rename(local)
    return local


def choose_resume_point(bucket: Bucket, paths: RunPaths, local_root: Path, writer: bool = True) -> ResumePoint:
    """The newest complete checkpoint that verifies, newest first; damaged ones are skipped and named.

    The markers of checkpoints newer than the one chosen are removed: training will write those steps again, and
    a marker left from the old files would make a half-rewritten folder look complete. Only the `writer` (the
    main process) removes them.
    """
    remote = bucket.local_path(paths.prefix) is None
    point = ResumePoint(None, None)
    for step, name in reversed(complete_checkpoints(bucket, paths)):
        try:
            folder = fetch_checkpoint(bucket, paths, name, local_root / name)
            try:
                verify_checkpoint(folder, step)
            except DamagedCheckpoint:
                if not remote:
                    raise
                # the local copy may be what is damaged (an older cft wrote the marker first): fetch it again
                folder = fetch_checkpoint(bucket, paths, name, local_root / name, refresh=True)
                verify_checkpoint(folder, step)
        except DamagedCheckpoint as error:
            logger.warning("checkpoint %s is damaged: %s; trying the next older one", name, error)
            point.skipped.append(str(error))
            continue
        point.folder, point.step = folder, step
        break
    if writer:
        _unmark_newer(bucket, paths, local_root, point.step)
    return point


def _unmark_newer(bucket: Bucket, paths: RunPaths, local_root: Path, step: int | None) -> None:
    for name in bucket.list_dirs(f"{paths.checkpoints}/"):
        found = checkpoint_step(name)
        if found is not None and (step is None or found > step):
            bucket.delete_prefix(f"{paths.checkpoint(name)}/{COMPLETE_MARKER}")
            if bucket.local_path(paths.prefix) is None:
                (local_root / name / COMPLETE_MARKER).unlink(missing_ok=True)


def prune_checkpoints(bucket: Bucket, paths: RunPaths, keep: int, newest: int, local_root: Path | None,
                      best: int | None = None) -> None:
    """Keeps the `keep` newest complete checkpoints, and the one of step `best` (the best dev score so far: the
    adapter `train.keep_best` publishes); called only once checkpoint `newest` is complete.

    Also removes folders older than `newest` that never got their marker (left by a kill mid-save), and, when the
    bucket is remote, local copies of checkpoints no longer kept and downloads a kill left half done. An older complete checkpoint is deleted marker
    first, so a kill mid-delete leaves it incomplete, never half-deleted yet complete.
    """
    kept = {name for _, name in complete_checkpoints(bucket, paths)[-max(1, keep):]}
    if best:
        kept.add(checkpoint_name(best))
    for name in bucket.list_dirs(f"{paths.checkpoints}/"):
        step = checkpoint_step(name)
        if step is None or step >= newest or name in kept:
            continue
        bucket.delete_prefix(f"{paths.checkpoint(name)}/{COMPLETE_MARKER}")
        bucket.delete_prefix(paths.checkpoint(name))
    if local_root is not None and local_root.is_dir():
        for folder in local_root.iterdir():
            if folder.name.startswith(".") and folder.name.endswith(".partial"):  # a download a kill interrupted
                shutil.rmtree(folder, ignore_errors=True)
                continue
            step = checkpoint_step(folder.name)
            if folder.is_dir() and step is not None and step < newest and folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)
