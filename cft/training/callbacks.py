"""Trainer callbacks: checkpoint sync to the bucket, heartbeat, and throughput in the logs."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cft.storage.bucket import Bucket
from cft.training.checkpoints import complete_checkpoints, prune_checkpoints
from notify.run_layout import COMPLETE_MARKER, RunPaths, checkpoint_name

__all__ = ["CheckpointSync", "complete_checkpoints", "now_iso", "write_status"]

logger = logging.getLogger("cft")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CheckpointSync(TrainerCallback):
    """After the Trainer has fully written a checkpoint, publish it to the bucket and mark it complete.

    Only the main process writes. A checkpoint in the bucket counts only once its `_COMPLETE` marker exists, and
    the marker is written after every other file, so a job killed mid-upload never leaves a checkpoint that looks
    whole. Retention is here, not the Trainer's (`save_total_limit` would delete the previous checkpoint before
    this one has its marker): older complete checkpoints beyond `keep` go only after the new one is complete, and the
checkpoint with the best dev score so far is never one of them.
    """

    def __init__(self, bucket: Bucket, paths: RunPaths, keep: int = 2, before_write: Any = None) -> None:
        self.bucket = bucket
        self.paths = paths
        self.keep = max(1, keep)
        self.before_write = before_write  # e.g. the run lease's check: a writer that lost its lease stops here

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self.before_write is not None:
            self.before_write()
        name = checkpoint_name(state.global_step)
        local = Path(args.output_dir) / name
        prefix = self.paths.checkpoint(name)
        started = time.monotonic()
        if self.bucket.local_path(prefix) is None:
            # an old marker under this name would vouch for a half-overwritten folder
            self.bucket.delete_prefix(f"{prefix}/{COMPLETE_MARKER}")
        self.bucket.upload_dir(local, prefix, marker=COMPLETE_MARKER)
        logger.info("checkpoint %s saved to %s (%.1fs)", name, self.bucket.join(prefix), time.monotonic() - started)
        remote = self.bucket.local_path(self.paths.prefix) is None
        prune_checkpoints(self.bucket, self.paths, self.keep, state.global_step,
                          Path(args.output_dir) if remote else None, best=getattr(state, "best_global_step", None))
        write_status(self.bucket, self.paths, "running", step=state.global_step)


def write_status(bucket: Bucket, paths: RunPaths, status: str, **fields: Any) -> None:
    """A small heartbeat read by `cft runs` to tell a running run from an abandoned one."""
    bucket.write_text(paths.status,
                      json.dumps({"status": status, "updated_at": now_iso(), **fields}, indent=2) + "\n")
