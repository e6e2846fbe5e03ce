"""Trainer callbacks: checkpoint sync to the bucket, heartbeat, and throughput in the logs."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cft.storage.bucket import Bucket

logger = logging.getLogger("cft")

COMPLETE_MARKER = "_COMPLETE"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def complete_checkpoints(bucket: Bucket, run_prefix: str) -> list[tuple[int, str]]:
    """(step, name) of checkpoints in the bucket whose marker exists, oldest first."""
    keys = bucket.list_keys(f"{run_prefix}/checkpoints/")
    base = f"{run_prefix}/checkpoints/"
    found = []
    for key in keys:
        parts = key[len(base):].split("/")
        if len(parts) == 2 and parts[1] == COMPLETE_MARKER:
            match = CHECKPOINT_PATTERN.match(parts[0])
            if match:
                found.append((int(match.group(1)), parts[0]))
    return sorted(found)


class CheckpointSync(TrainerCallback):
    """After the Trainer has fully written a checkpoint, publish it to the bucket and mark it complete.

    Only the main process writes. A checkpoint in the bucket counts only once its `_COMPLETE` marker exists, and
    the marker is written after every other file, so a job killed mid-upload never leaves a checkpoint that looks
    whole. Older complete checkpoints beyond `keep` are removed, marker first.
    """

    def __init__(self, bucket: Bucket, run_prefix: str, keep: int = 2) -> None:
        self.bucket = bucket
        self.run_prefix = run_prefix
        self.keep = max(1, keep)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        prefix = f"{self.run_prefix}/checkpoints/{name}"
        started = time.monotonic()
        self.bucket.upload_dir(local, prefix, marker=COMPLETE_MARKER)
        logger.info("checkpoint %s saved to %s (%.1fs)", name, self.bucket.join(prefix), time.monotonic() - started)
        for _step, old in complete_checkpoints(self.bucket, self.run_prefix)[:-self.keep]:
            old_prefix = f"{self.run_prefix}/checkpoints/{old}"
            if self.bucket.local_path(old_prefix) == local:
                continue
            self.bucket.delete_prefix(f"{old_prefix}/{COMPLETE_MARKER}")
            self.bucket.delete_prefix(old_prefix)
        write_status(self.bucket, self.run_prefix, "running", step=state.global_step)


def write_status(bucket: Bucket, run_prefix: str, status: str, **fields: Any) -> None:
    """A small heartbeat read by `cft runs` to tell a running run from an abandoned one."""
    bucket.write_text(f"{run_prefix}/status.json",
                      json.dumps({"status": status, "updated_at": now_iso(), **fields}, indent=2) + "\n")
