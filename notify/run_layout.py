"""The run layout: where everything a run writes lives under ``<bucket>/runs/<run_id>/``, defined once.

    runs/<run_id>/
      config.yaml                        resolved recipe
      status.json                        heartbeat while it runs
      checkpoints/checkpoint-<step>/     resume points; one counts only once its _COMPLETE marker exists
      adapter/                           final PEFT adapter + tokenizer + cft_metadata.json
      eval/                              mteb results, summary.json, summary.md, compare.png
      logs/  tensorboard/  training.png  what happened
      manifest.json                      written last: the run is complete when it exists

Why here and not in ``cft``: ``notify`` reads a run's manifest and uploads its logs on machines where only
``requests`` is installed (the SkyPilot controller, a laptop), and it must never import ``cft``. ``cft`` already
depends on ``notify`` for the run id (``run_identity``), so the one definition lives on this side of the arrow
and both import it. Stdlib only.

Keys are '/'-separated and relative to the bucket root, so they work for a local folder and an S3 prefix alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUNS_DIR = "runs"
CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
MANIFEST_FILE = "manifest.json"
CHECKPOINTS_DIR = "checkpoints"
COMPLETE_MARKER = "_COMPLETE"
ADAPTER_DIR = "adapter"
EVAL_DIR = "eval"
EVAL_SUMMARY = f"{EVAL_DIR}/summary.json"
LOGS_DIR = "logs"
TENSORBOARD_DIR = "tensorboard"
TRAINING_PLOT = "training.png"

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    """The folder name the HF Trainer gives the checkpoint of `step`."""
    return f"checkpoint-{step}"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint folder name, or None when the name is not one."""
    match = CHECKPOINT_PATTERN.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RunPaths:
    """The keys of one run, relative to the bucket root: ``RunPaths("r1").manifest == "runs/r1/manifest.json"``."""

    run_id: str

    @property
    def prefix(self) -> str:
        return f"{RUNS_DIR}/{self.run_id}"

    def key(self, *parts: str) -> str:
        """A key inside the run folder."""
        return "/".join([self.prefix, *(part.strip("/") for part in parts if part)])

    @property
    def config(self) -> str:
        return self.key(CONFIG_FILE)

    @property
    def status(self) -> str:
        return self.key(STATUS_FILE)

    @property
    def manifest(self) -> str:
        return self.key(MANIFEST_FILE)

    @property
    def checkpoints(self) -> str:
        return self.key(CHECKPOINTS_DIR)

    def checkpoint(self, name: str) -> str:
        return self.key(CHECKPOINTS_DIR, name)

    @property
    def adapter(self) -> str:
        return self.key(ADAPTER_DIR)

    @property
    def eval(self) -> str:
        return self.key(EVAL_DIR)

    @property
    def eval_summary(self) -> str:
        return self.key(EVAL_SUMMARY)

    def log(self, name: str) -> str:
        return self.key(LOGS_DIR, name)


def run_of_adapter(adapter_uri: str) -> tuple[str, str] | None:
    """(bucket root, run id) when `adapter_uri` is ``<root>/runs/<run_id>/adapter``, else None."""
    parts = str(adapter_uri).rstrip("/").split("/")
    if len(parts) < 4 or parts[-1] != ADAPTER_DIR or parts[-3] != RUNS_DIR:
        return None
    return "/".join(parts[:-3]) or "/", parts[-2]
