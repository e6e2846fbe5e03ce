"""One training run, end to end: recipe -> data -> LoRA model -> Trainer -> adapter, in the bucket layout.

    <bucket>/runs/<run_id>/config.yaml, checkpoints/, adapter/, logs/, training.png, status.json, manifest.json

The run id is stable across restarts (`--run-id`, `RUN_ID`, `SKYPILOT_TASK_ID`), so a restarted or recovered job
finds its own newest complete checkpoint and resumes from it; a run whose manifest says it succeeded is not trained
again. Only the main process writes to the bucket; the manifest is written last.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cft import __version__
from cft.config import Recipe
from cft.errors import CFTError
from cft.storage.bucket import CACHE_DIR, Bucket, open_bucket
from cft.storage.lease import RunLease
from cft.storage.manifest import read_manifest, write_manifest
from cft.training.callbacks import CheckpointSync, now_iso, write_status
from cft.training.checkpoints import ResumePoint, choose_resume_point
from cft.training.interrupt import signal_name
from cft.training.memory import plan_memory
from notify.redact import redact

logger = logging.getLogger("cft")


@dataclass
class RunResult:
    run_id: str
    status: str
    manifest: dict[str, Any] = field(default_factory=dict)
    adapter_uri: str | None = None


def git_sha() -> str | None:
    if os.environ.get("CFT_GIT_SHA"):
        return os.environ["CFT_GIT_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def resolve_id(explicit: str | None) -> str:
    """The run id (`--run-id`, RUN_ID, SKYPILOT_TASK_ID, else a timestamp); CFTError when it is not safe."""
    from notify.run_identity import InvalidRunId, resolve_run_id

    try:
        return resolve_run_id(explicit)
    except InvalidRunId as error:
        raise CFTError(str(error)) from None


def _report_to(choice: str) -> list[str]:
    if choice == "none":
        return []
    if choice in ("tensorboard", "wandb"):
        return [choice]
    targets = []
    try:
        import tensorboard  # noqa: F401

        targets.append("tensorboard")
    except ImportError:
        pass
    if os.environ.get("WANDB_API_KEY"):
        try:
            import wandb  # noqa: F401

            targets.append("wandb")
        except ImportError:
            logger.warning("WANDB_API_KEY is set but wandb is not installed; pip install wandb to track there")
    return targets


def _use_bf16(setting: str | bool) -> bool:
    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == "auto":
        return available
    if setting and not available:
        raise CFTError("train.bf16 is true but no GPU with bf16 is available; set train.bf16=auto")
    return bool(setting)


class _RedactingFormatter(logging.Formatter):
    """Log lines with the values of secret environment variables masked: this log is uploaded to the bucket."""

    def __init__(self, fmt: str) -> None:
        from notify.redact import text_redactor

        super().__init__(fmt)
        self._redact = text_redactor(os.environ)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def _attach_log_file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("cft", "transformers.trainer"):
        logging.getLogger(name).addHandler(handler)
    return handler


def _announce(title: str, message: str, tags: list[str]) -> None:
    """A notification from inside the run (e.g. 'resumed'); never fails the run."""
    try:
        from notify.client import notify

        notify(message, title=title, tags=tags)
    except Exception as error:  # notifications are best-effort by contract
        logger.warning("notification failed: %s", error)


def train(recipe: Recipe, recipe_source: str, output: str = "./cft-runs", run_id: str | None = None,
          extra_callbacks: list[Any] | None = None) -> RunResult:
    """Trains (or resumes, or skips a finished) run and returns its result; raises CFTError on user errors.

    `extra_callbacks` are Trainer callbacks added to the run's own (progress hooks, tests that stop a run).
    """
    from transformers import TrainingArguments, set_seed

    from cft.data.collator import TokenizedTriplets, TripletCollator
    from cft.data.triplets import load_triplets
    from cft.losses.info_nce import InfoNCELoss
    from cft.modeling.backbone import build_lora_model, load_backbone, load_tokenizer
    from cft.modeling.metadata import AdapterMetadata
    from cft.training.plots import plot_training
    from cft.training.trainer import ContrastiveTrainer
    run_id = resolve_id(run_id)
    bucket = open_bucket(output)
    run_prefix = f"runs/{run_id}"
    started_at, started = now_iso(), time.time()

    train_settings = recipe.train
    on_gpu = torch.cuda.is_available()
    bf16 = _use_bf16(train_settings.bf16)
    local_run = bucket.local_path(run_prefix)
    workdir = local_run if local_run is not None else Path(os.environ.get("CFT_WORK_DIR", CACHE_DIR / "work")) / run_id
    checkpoint_dir = workdir / "checkpoints"
    if train_settings.report_to != "none":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(workdir / "tensorboard"))
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=train_settings.batch_size,
        learning_rate=train_settings.learning_rate,
        lr_scheduler_type=train_settings.lr_scheduler,
        warmup_steps=train_settings.warmup_steps,
        weight_decay=train_settings.weight_decay,
        num_train_epochs=train_settings.num_epochs,
        max_steps=train_settings.max_steps,
        max_grad_norm=train_settings.max_grad_norm,
        logging_steps=train_settings.logging_steps,
        save_strategy="steps",
        save_steps=train_settings.save_steps,
        save_total_limit=None,  # CheckpointSync keeps train.save_total_limit, deleting only after the next is complete
        seed=train_settings.seed,
        bf16=bf16,
        use_cpu=not on_gpu,
        report_to=_report_to(train_settings.report_to),
        remove_unused_columns=False,
        label_names=[],
        dataloader_drop_last=True,
        dataloader_num_workers=train_settings.dataloader_workers,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        logging_nan_inf_filter=False,  # a NaN must show (and stop the run), not be averaged away
    )
    is_main = args.process_index == 0
    if args.world_size > 1 and args.process_index == 0:
        logger.info("distributed: world size %d", args.world_size)

    existing = read_manifest(bucket, run_prefix)
    if existing and existing.get("status") == "succeeded":
        logger.info("run %s already succeeded (%s); not training again. Use another --run-id for a new run.",
                    run_id, bucket.join(run_prefix, "manifest.json"))
        return RunResult(run_id, "succeeded", existing, existing.get("adapter"))

    # One writer per run: the main process holds the run's lease (LeaseHeld: exit 2, nothing written) until the end.
    lease = RunLease(bucket, run_prefix) if is_main else None
    if lease is not None:
        lease.acquire()
    log_handler = _attach_log_file(workdir / "logs" / f"train-{time.strftime('%Y%m%d-%H%M%S')}-rank{args.process_index}.log") \
        if is_main else None
    set_seed(train_settings.seed)

    trainer: Any = None
    resumed_step: int | None = None
    writer = is_main  # the process that records how the run ended, while it still holds the lease
    try:
        # Resume: the newest complete checkpoint that verifies. Every node needs it locally, so each node's main
        # process fetches it (when the bucket is remote) while the others wait.
        with args.main_process_first(local=True, desc="fetching checkpoint"):
            point = choose_resume_point(bucket, run_prefix, checkpoint_dir, writer=is_main)
        resume_from, resumed_step = point.folder, point.step

        if is_main:
            bucket.write_text(f"{run_prefix}/config.yaml", redact(recipe.to_yaml()))  # as the manifest is
            write_status(bucket, run_prefix, "running", step=resumed_step or 0)
            _announce_resume(point, run_id)

        tokenizer = load_tokenizer(recipe.model)
        triplets, report = load_triplets(recipe.data)
        if is_main:
            print(report.summary(), file=sys.stderr, flush=True)
        dataset = TokenizedTriplets(triplets, tokenizer, recipe.model.max_length, recipe.model.prompt_template,
                                    show_progress=is_main)
        if len(dataset) < train_settings.batch_size * args.world_size:
            raise CFTError(f"{recipe.data.train_file}: {len(dataset)} usable triplets, fewer than one batch "
                           f"({train_settings.batch_size} x {args.world_size} processes); lower train.batch_size")
        if train_settings.batch_size * args.world_size == 1 and not any(item["negative"] for item in dataset.items):
            raise CFTError(f"train.batch_size=1 on pairs without hard negatives ({recipe.data.train_file}): a batch "
                           "has no negative, the loss is always 0 and nothing is learned; use train.batch_size >= 2")

        backbone = load_backbone(recipe.model, args.device)
        model = build_lora_model(backbone, recipe.lora, train_settings.gradient_checkpointing)
        if is_main:
            trainable, total = model.get_nb_trainable_parameters()
            logger.info("LoRA r=%d on %s: %d trainable of %d parameters", recipe.lora.r, recipe.lora.target_modules,
                        trainable, total)
        plan = plan_memory(model, dataset.items, train_settings.batch_size, train_settings.grad_cache_chunk_size,
                           tokenizer.pad_token_id, recipe.model.pooling, args.device,
                           lambda: torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=bf16))
        if is_main:
            logger.info(plan.line())

        callbacks = [CheckpointSync(bucket, run_prefix, train_settings.save_total_limit,
                                    before_write=lease.check if lease else None), *(extra_callbacks or [])]
        trainer = ContrastiveTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=TripletCollator(tokenizer.pad_token_id),
            loss_fn=InfoNCELoss(train_settings.temperature),
            pooling=recipe.model.pooling,
            grad_cache_chunk_size=plan.chunk,
            callbacks=callbacks,
        )
        if resumed_step is not None and 0 < train_settings.max_steps <= resumed_step:
            # Killed after its final checkpoint (while saving the adapter, say): nothing is left to train. The
            # Trainer, resumed at max_steps, would take one more step past it, so finish from the checkpoint.
            output = _finish_from_checkpoint(trainer, model, resume_from)
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

        adapter_uri = bucket.join(run_prefix, "adapter")
        manifest: dict[str, Any] = {}
        if is_main:
            lease.check()  # type: ignore[union-attr]
            adapter_dir = workdir / "adapter"
            model.save_pretrained(str(adapter_dir))
            tokenizer.save_pretrained(str(adapter_dir))
            base = recipe.model.name_or_path
            AdapterMetadata(
                base_model=str(Path(base).resolve()) if Path(base).exists() else base,  # hub ids stay ids
                gguf_file=recipe.model.gguf_file,
                revision=recipe.model.revision,
                trust_remote_code=recipe.model.trust_remote_code,
                pooling=recipe.model.pooling,
                max_length=recipe.model.max_length,
                prompt_template=recipe.model.prompt_template,
                dtype=recipe.model.dtype,
                recipe=recipe.name,
                run_id=run_id,
            ).save(adapter_dir)
            if local_run is None:
                bucket.delete_prefix(f"{run_prefix}/adapter")
                bucket.upload_dir(adapter_dir, f"{run_prefix}/adapter")
            plot = plot_training(trainer.state.log_history, workdir / "training.png",
                                 f"cft training: {recipe.name} ({run_id})")
            if plot and local_run is None:
                bucket.upload_file(plot, f"{run_prefix}/training.png")
            losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
            manifest = {
                "run_id": run_id,
                "status": "succeeded",
                "model": recipe.model.name_or_path,
                "recipe": recipe_source,
                "recipe_name": recipe.name,
                "git_sha": git_sha(),
                "cft_version": __version__,
                "started_at": started_at,
                "finished_at": now_iso(),
                "duration_s": round(time.time() - started, 1),
                "steps": trainer.state.global_step,
                "resumed_from_step": resumed_step,
                "world_size": args.world_size,
                "triplets": len(dataset),
                "metrics": {
                    # over every logged step of the run, including those before a resume
                    "train_loss": round(sum(losses) / len(losses), 4) if losses else round(float(output.training_loss), 4),
                    "final_loss": round(float(losses[-1]), 4) if losses else None,
                    "first_loss": round(float(losses[0]), 4) if losses else None,
                },
                "adapter": adapter_uri,
                "error": None,
            }
            _upload_logs(bucket, run_prefix, workdir, local_run is None, log_handler)
            lease.check()  # type: ignore[union-attr]
            write_status(bucket, run_prefix, "succeeded", step=trainer.state.global_step)
            write_manifest(bucket, run_prefix, manifest)
            logger.info("adapter saved to %s", adapter_uri)
        return RunResult(run_id, "succeeded", manifest, adapter_uri)
    except KeyboardInterrupt as error:  # SIGTERM (RunInterrupted) or SIGINT: resumable, so no manifest
        if writer and lease.held:  # type: ignore[union-attr]
            _record_interruption(bucket, run_prefix, signal_name(error), trainer, resumed_step)
        raise
    except Exception as error:
        if writer and lease.held:  # type: ignore[union-attr]  # a writer that lost its lease leaves the run alone
            _record_failure(bucket, run_prefix, run_id, recipe, recipe_source, started_at, started, error)
        raise
    finally:
        if lease is not None:
            lease.release()
        if log_handler is not None:
            for name in ("cft", "transformers.trainer"):
                logging.getLogger(name).removeHandler(log_handler)
            log_handler.close()


def _announce_resume(point: ResumePoint, run_id: str) -> None:
    """Says where the run starts when that is not simply 'from scratch': resumed, or past damaged checkpoints."""
    if point.folder is None and not point.skipped:
        return
    message = point.describe(run_id)
    (logger.warning if point.skipped else logger.info)(message)
    print(f"cft: {message}", file=sys.stderr, flush=True)
    if point.folder is None:
        _announce("cft: starting over", message, ["warning"])
    else:
        _announce("cft: resumed", message, ["arrows_counterclockwise"] + (["warning"] if point.skipped else []))


def _finish_from_checkpoint(trainer: Any, model: Any, checkpoint: Path) -> Any:
    """The model and trainer state of a checkpoint that already reached max_steps, as `trainer.train()` would end."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    logger.info("checkpoint %s is already at max_steps; nothing left to train", checkpoint.name)
    return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else 0.0, {})


def _upload_logs(bucket: Bucket, run_prefix: str, workdir: Path, remote: bool, handler: logging.Handler | None) -> None:
    if handler is not None:
        handler.flush()
    if not remote:
        return
    for folder in ("logs", "tensorboard"):
        local = workdir / folder
        if local.is_dir():
            bucket.upload_dir(local, f"{run_prefix}/{folder}")


def _record_interruption(bucket: Bucket, run_prefix: str, signal_name: str, trainer: Any,
                         resumed_step: int | None) -> None:
    """status.json says interrupted (by which signal, at which step); the next start resumes."""
    step = trainer.state.global_step if trainer is not None else resumed_step or 0
    logger.warning("interrupted by %s at step %d; the next start resumes from the newest complete checkpoint",
                   signal_name, step)
    try:
        write_status(bucket, run_prefix, "interrupted", step=step, signal=signal_name)
    except Exception as write_error:  # a preempted node may already have lost its network
        logger.error("could not record the interruption in %s: %s", bucket.join(run_prefix), write_error)


def _record_failure(bucket: Bucket, run_prefix: str, run_id: str, recipe: Recipe, recipe_source: str,
                    started_at: str, started: float, error: BaseException) -> None:
    """A failed manifest says why; if the bucket itself is what failed, only the log can say it."""
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    manifest = {
        "run_id": run_id, "status": "failed", "model": recipe.model.name_or_path, "recipe": recipe_source,
        "recipe_name": recipe.name, "git_sha": git_sha(), "cft_version": __version__, "started_at": started_at,
        "finished_at": now_iso(), "duration_s": round(time.time() - started, 1), "steps": None,
        "resumed_from_step": None, "world_size": None, "metrics": {}, "adapter": None, "error": reason[:2000],
    }
    try:
        write_status(bucket, run_prefix, "failed")
        write_manifest(bucket, run_prefix, manifest)
    except Exception as write_error:  # the bucket may be what failed
        logger.error("could not record the failure in %s: %s", bucket.join(run_prefix), write_error)
