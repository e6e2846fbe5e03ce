"""One training run, end to end: recipe -> data -> LoRA model -> Trainer -> adapter, in the run layout.

    <bucket>/runs/<run_id>/config.yaml, checkpoints/, adapter/, logs/, training.png, status.json, manifest.json
    (the names are `notify.run_layout`'s; the manifest is `notify.manifest.Manifest`)

The run id is stable across restarts (`--run-id`, `RUN_ID`, `SKYPILOT_TASK_ID`), so a restarted or recovered job
finds its own newest complete checkpoint and resumes from it; a run whose manifest says it succeeded is not trained
again. Only the main process writes to the bucket; the manifest is written last. With `train.eval_data` the
Trainer scores a dev set as it trains (`dev_eval`), and the manifest records the last and best dev scores. `train`
reads as its steps: open the run, resume point, trainer, fit, keep the best, publish (adapter, plot, logs,
manifest), or record the failure.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cft import __version__
from cft.config import Recipe
from cft.errors import CFTError
from cft.storage.bucket import CACHE_DIR, Bucket, open_bucket
from cft.storage.lease import RunLease
from cft.storage.manifest import read_manifest, write_manifest
from cft.training.arguments import training_arguments
from cft.training.callbacks import CheckpointSync, now_iso, write_status
from cft.training.checkpoints import ResumePoint, choose_resume_point, fetch_checkpoint
from cft.training.dev_eval import dev_metrics
from cft.training.interrupt import signal_name
from notify.manifest import Manifest, ManifestError
from notify.redact import redact
from notify.run_identity import InvalidRunId, resolve_run_id, timestamp
from notify.run_layout import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    LOGS_DIR,
    TENSORBOARD_DIR,
    TRAINING_PLOT,
    RunPaths,
    checkpoint_name,
    checkpoint_step,
)

logger = logging.getLogger("cft")
_LOGGERS = ("cft", "transformers.trainer")  # what the run's log file records


@dataclass
class RunResult:
    run_id: str
    status: str
    manifest: Manifest | None = None  # None on processes other than the main one
    adapter_uri: str | None = None


@dataclass
class _Run:
    """What every step of one run needs: what it trains, where it writes, and the Trainer's arguments."""

    recipe: Recipe
    recipe_source: str
    run_id: str
    bucket: Bucket
    paths: RunPaths
    workdir: Path  # the run folder itself for a local bucket, else a local working copy that is uploaded
    remote: bool
    args: Any  # transformers.TrainingArguments
    started_at: str
    started: float
    lease: RunLease | None = None  # held by the main process from before its first write to the end

    @property
    def is_main(self) -> bool:
        return self.args.process_index == 0

    @property
    def writer(self) -> bool:
        """The process that writes to the bucket: the main one, while it holds the run's lease."""
        return self.is_main and self.lease is not None and self.lease.held

    def check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()


def git_sha() -> str | None:
    """The commit of the code that ran (`CFT_GIT_SHA` where the job has no git checkout), or None."""
    if os.environ.get("CFT_GIT_SHA"):
        return os.environ["CFT_GIT_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def train(recipe: Recipe, recipe_source: str, output: str = "./cft-runs", run_id: str | None = None,
          extra_callbacks: list[Any] | None = None) -> RunResult:
    """Trains (or resumes, or skips a finished) run and returns its result; raises CFTError on user errors.

    `extra_callbacks` are Trainer callbacks added to the run's own (progress hooks, tests that stop a run).
    """
    from transformers import set_seed

    run = _open_run(recipe, recipe_source, output, run_id)
    finished = _already_succeeded(run)
    if finished is not None:
        return finished
    _take_lease(run)  # a second live writer: LeaseHeld (exit 2), before anything is written
    log_handler = _attach_log_file(run) if run.is_main else None
    set_seed(recipe.train.seed)
    trainer, resume = None, ResumePoint(None, None)
    try:
        resume = _fetch_resume_point(run)
        _mark_started(run, resume)
        trainer, model, tokenizer, triplets = _build_trainer(run, extra_callbacks or [])
        trained = _fit(trainer, model, resume.folder, recipe.train.max_steps)
        result = RunResult(run.run_id, "succeeded", None, run.bucket.join(run.paths.adapter))
        if run.is_main:
            run.check_lease()
            adapter_step = _keep_best(run, trainer, model)
            plot = _save_plot(run, trainer)
            result.manifest = build_manifest(
                run, "succeeded", steps=trainer.state.global_step, world_size=run.args.world_size, triplets=triplets,
                resumed_from_step=resume.step, adapter=result.adapter_uri,
                metrics={**_loss_metrics(trainer.state.log_history, trained), **dev_metrics(trainer, adapter_step)})
            _save_adapter(run, model, tokenizer, result.manifest, plot)
            _publish(run, result.manifest, log_handler)
        return result
    except KeyboardInterrupt as error:  # SIGTERM (RunInterrupted) or SIGINT: resumable, so no manifest
        if run.writer:
            _record_interruption(run, signal_name(error), trainer.state.global_step if trainer else resume.step or 0)
        raise
    except Exception as error:
        if run.writer:  # a writer that lost its lease leaves the run to its new holder
            _record_failure(run, error)
        raise
    finally:
        _detach_log_file(log_handler)
        if run.lease is not None:
            run.lease.release()


def _open_run(recipe: Recipe, recipe_source: str, output: str, run_id: str | None) -> _Run:
    """The run's identity, bucket, working folder and Trainer arguments; nothing is written yet."""
    started_at, started = now_iso(), time.time()
    try:
        run_id = resolve_run_id(run_id)
    except InvalidRunId as error:
        raise CFTError(str(error)) from None
    bucket = open_bucket(output)
    paths = RunPaths(run_id)
    local_run = bucket.local_path(paths.prefix)
    workdir = local_run if local_run is not None else Path(os.environ.get("CFT_WORK_DIR", CACHE_DIR / "work")) / run_id
    if recipe.train.report_to != "none":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(workdir / TENSORBOARD_DIR))
    args = training_arguments(recipe.train, workdir / CHECKPOINTS_DIR)
    if args.world_size > 1 and args.process_index == 0:
        logger.info("distributed: world size %d", args.world_size)
    return _Run(recipe, recipe_source, run_id, bucket, paths, workdir, local_run is None, args, started_at, started)


def _already_succeeded(run: _Run) -> RunResult | None:
    """The result of a run whose manifest says it succeeded: it is not trained again."""
    try:
        existing = read_manifest(run.bucket, run.run_id)
    except ManifestError as error:
        logger.warning("run %s: %s; training it again", run.run_id, error)
        return None
    if existing is None or existing.status != "succeeded":
        return None
    logger.info("run %s already succeeded (%s); not training again. Use another --run-id for a new run.",
                run.run_id, run.bucket.join(run.paths.manifest))
    return RunResult(run.run_id, "succeeded", existing, existing.adapter)


def _take_lease(run: _Run) -> None:
    """One writer per run: the main process takes the run's lease (waiting out a dead holder's)."""
    if run.is_main:
        run.lease = RunLease(run.bucket, run.paths.prefix)
        run.lease.acquire()


def _fetch_resume_point(run: _Run) -> ResumePoint:
    """The newest complete checkpoint that verifies, as a local folder, past damaged newer ones. Every node needs it
    locally, so each node's main process fetches it (when the bucket is remote) while the others wait."""
    with run.args.main_process_first(local=True, desc="fetching checkpoint"):
        return choose_resume_point(run.bucket, run.paths, run.workdir / CHECKPOINTS_DIR, writer=run.is_main)


def _mark_started(run: _Run, resume: ResumePoint) -> None:
    """Config and first heartbeat in the bucket; a resumed run says so, and so does one that skipped damaged
    checkpoints or found none usable (log, stderr, notification)."""
    if not run.is_main:
        return
    run.bucket.write_text(run.paths.config, redact(run.recipe.to_yaml()))  # as the manifest is
    write_status(run.bucket, run.paths, "running", step=resume.step or 0)
    if resume.folder is None and not resume.skipped:
        return
    message = resume.describe(run.run_id)
    (logger.warning if resume.skipped else logger.info)(message)
    print(f"cft: {message}", file=sys.stderr, flush=True)
    if resume.folder is None:
        _announce("cft: starting over", message, ["warning"])
    else:
        _announce("cft: resumed", message, ["arrows_counterclockwise"] + (["warning"] if resume.skipped else []))


def _build_trainer(run: _Run, extra_callbacks: list[Any]) -> tuple[Any, Any, Any, int]:
    """(trainer, LoRA model, tokenizer, number of triplets): data, backbone, loss and memory plan wired into the
    Trainer."""
    import torch

    from cft.data.collator import TripletCollator
    from cft.modeling.backbone import build_lora_model, load_backbone, load_tokenizer
    from cft.training.memory import plan_memory
    from cft.training.trainer import ContrastiveTrainer

    recipe, settings = run.recipe, run.recipe.train
    tokenizer = load_tokenizer(recipe.model)
    dataset = _load_dataset(run, tokenizer)
    dev_evaluator, dev_callbacks = _dev_evaluation(run, tokenizer)  # before the model loads: a bad file fails fast
    model = build_lora_model(load_backbone(recipe.model, run.args.device), recipe.lora, settings.gradient_checkpointing,
                             base=recipe.model)
    if run.is_main:
        trainable, total = model.get_nb_trainable_parameters()
        logger.info("LoRA r=%d on %s: %d trainable of %d parameters", recipe.lora.r, recipe.lora.target_modules,
                    trainable, total)
    plan = plan_memory(model, dataset.items, settings.batch_size, settings.grad_cache_chunk_size,
                       tokenizer.pad_token_id, recipe.model.pooling, run.args.device,
                       lambda: torch.autocast(run.args.device.type, dtype=torch.bfloat16, enabled=run.args.bf16))
    if run.is_main:
        logger.info(plan.line())
    trainer = ContrastiveTrainer(
        model=model,
        args=run.args,
        train_dataset=dataset,
        data_collator=TripletCollator(tokenizer.pad_token_id),
        loss_fn=_loss(recipe, model),
        pooling=recipe.model.pooling,
        grad_cache_chunk_size=plan.chunk,
        dev_evaluator=dev_evaluator,
        callbacks=[*dev_callbacks,
                   CheckpointSync(run.bucket, run.paths, settings.save_total_limit, before_write=run.check_lease),
                   *extra_callbacks],
    )
    return trainer, model, tokenizer, len(dataset)


def _dev_evaluation(run: _Run, tokenizer: Any) -> tuple[Any, list[Any]]:
    """The dev-set evaluator and its callbacks (save the best, stop early), or (None, []) without train.eval_data.

    Every process reads the dev set, so a bad file stops them all; only the main one scores it."""
    settings = run.recipe.train
    if settings.eval_data is None:
        return None, []
    from cft.evaluation.dev_set import load_dev_set
    from cft.training.dev_eval import DevEvaluator, DevSchedule, EarlyStopping

    devset = load_dev_set(settings.eval_data)
    if run.is_main:
        logger.info("dev set %s: %d pairs, scored every %d steps%s%s", devset.name, len(devset),
                    settings.dev_eval_steps, "; adapter/ keeps the best" if settings.keep_best else "",
                    f"; stops after {settings.early_stopping_patience} evaluations without improvement"
                    if settings.early_stopping_patience else "")
    callbacks: list[Any] = [DevSchedule()]
    if settings.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(early_stopping_patience=settings.early_stopping_patience))
    return DevEvaluator(devset, tokenizer, run.recipe.model, settings.eval_batch_size), callbacks


def _loss(recipe: Any, model: Any) -> Any:
    """InfoNCE, or its Matryoshka form when `loss.matryoshka_dims` is set (checked against the hidden size now,
    not at the first step)."""
    from cft.losses import InfoNCELoss, MatryoshkaInfoNCELoss

    dims, temperature = recipe.loss.matryoshka_dims, recipe.train.temperature
    if dims is None:
        return InfoNCELoss(temperature)
    width = model.config.hidden_size
    if max(dims) > width:
        raise CFTError(f"loss.matryoshka_dims {dims}: {max(dims)} is larger than the embedding of "
                       f"{recipe.model.name_or_path} ({width} dimensions); list dims <= {width}")
    return MatryoshkaInfoNCELoss(temperature, dims, recipe.loss.matryoshka_weights)


def _load_dataset(run: _Run, tokenizer: Any) -> Any:
    """The recipe's triplets, tokenized once; CFTError when they do not fill one batch on every process."""
    from cft.data.collator import TokenizedTriplets
    from cft.data.triplets import load_triplets

    recipe, batch_size, world_size = run.recipe, run.recipe.train.batch_size, run.args.world_size
    triplets, report = load_triplets(recipe.data)
    if run.is_main:
        print(report.summary(), file=sys.stderr, flush=True)
    dataset = TokenizedTriplets(triplets, tokenizer, recipe.model.max_length, recipe.model.prompts(),
                                show_progress=run.is_main)
    if len(dataset) < batch_size * world_size:
        raise CFTError(f"{recipe.data.train_file}: {len(dataset)} usable triplets, fewer than one batch "
                       f"({batch_size} x {world_size} processes); lower train.batch_size")
    if batch_size * world_size == 1 and not any(item["negatives"] for item in dataset.items):
        raise CFTError(f"train.batch_size=1 on pairs without hard negatives ({recipe.data.train_file}): a batch "
                       "has no negative, the loss is always 0 and nothing is learned; use train.batch_size >= 2")
    return dataset


def _fit(trainer: Any, model: Any, resume_from: Path | None, max_steps: int) -> Any:
    """trainer.train(), from the resume point when there is one."""
    resumed_step = checkpoint_step(resume_from.name) if resume_from else None
    if resume_from is not None and resumed_step is not None and 0 < max_steps <= resumed_step:
        # Killed after its final checkpoint (while saving the adapter, say): nothing is left to train. The
        # Trainer, resumed at max_steps, would take one more step past it, so finish from the checkpoint.
        return _finish_from_checkpoint(trainer, model, resume_from)
    return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


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


def _keep_best(run: _Run, trainer: Any, model: Any) -> int:
    """With train.keep_best, loads the weights of the checkpoint with the best dev score into the model; returns the
    step the adapter about to be saved is from."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state, settings = trainer.state, run.recipe.train
    best = getattr(state, "best_global_step", None)
    if not settings.keep_best or not best or best == state.global_step:
        return state.global_step
    name = checkpoint_name(best)
    try:
        folder = fetch_checkpoint(run.bucket, run.paths, name, run.workdir / CHECKPOINTS_DIR / name)
        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    except Exception as error:  # the bucket's or safetensors' own types; the last step's adapter is still saved
        logger.warning("train.keep_best: cannot load %s (%s: %s); adapter/ holds step %d instead (the manifest's "
                       "adapter_step says so)", run.bucket.join(run.paths.checkpoint(name)), type(error).__name__,
                       error, state.global_step)
        return state.global_step
    logger.info("train.keep_best: adapter/ holds %s, the best dev score (%.2f), not step %d", name, state.best_metric,
                state.global_step)
    return best


def _save_adapter(run: _Run, model: Any, tokenizer: Any, manifest: Manifest, plot: Path | None) -> None:
    """The PEFT adapter, its tokenizer, cft's metadata (the model config as trained) and its model card (README.md,
    in place of PEFT's empty template) in the run's adapter/."""
    from cft.export.model_card import RunRecord, build_card, write_card
    from cft.modeling.metadata import AdapterMetadata

    adapter_dir = run.workdir / ADAPTER_DIR
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    base = run.recipe.model.name_or_path
    resolved = str(Path(base).resolve()) if Path(base).exists() else base  # hub ids stay ids
    model_config = dataclasses.replace(run.recipe.model, name_or_path=resolved)
    metadata = AdapterMetadata(model_config, recipe=run.recipe.name, run_id=run.run_id,
                               matryoshka_dims=run.recipe.loss.matryoshka_dims)
    metadata.save(adapter_dir)
    record = RunRecord(run_id=run.run_id, manifest=manifest, recipe=run.recipe.to_dict(), training_plot=plot)
    card = build_card("adapter", metadata, record, plot_link=f"../{TRAINING_PLOT}" if plot else None)
    write_card(card, adapter_dir)  # the curve stays in the run folder, one level up
    if run.remote:
        run.bucket.delete_prefix(run.paths.adapter)
        run.bucket.upload_dir(adapter_dir, run.paths.adapter)


def _save_plot(run: _Run, trainer: Any) -> Path | None:
    from cft.training.plots import plot_training

    plot = plot_training(trainer.state.log_history, run.workdir / TRAINING_PLOT,
                         f"cft training: {run.recipe.name} ({run.run_id})",
                         best_step=getattr(trainer.state, "best_global_step", None))
    if plot and run.remote:
        run.bucket.upload_file(plot, run.paths.key(TRAINING_PLOT))
    return Path(plot) if plot else None


def _loss_metrics(log_history: list[dict[str, Any]], trained: Any) -> dict[str, float | None]:
    """Over every logged step of the run, including those before a resume."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return {
        "train_loss": round(sum(losses) / len(losses), 4) if losses else round(float(trained.training_loss), 4),
        "final_loss": round(float(losses[-1]), 4) if losses else None,
        "first_loss": round(float(losses[0]), 4) if losses else None,
    }


def build_manifest(run: _Run, status: str, **outcome: Any) -> Manifest:
    """The one manifest of a run, succeeded or failed: what ran, where, when, and the `outcome` fields given."""
    return Manifest(run_id=run.run_id, status=status, model=run.recipe.model.name_or_path, recipe=run.recipe_source,
                    recipe_name=run.recipe.name, git_sha=git_sha(), cft_version=__version__,
                    started_at=run.started_at, finished_at=now_iso(), duration_s=round(time.time() - run.started, 1),
                    **outcome)


def _publish(run: _Run, manifest: Manifest, log_handler: logging.Handler | None) -> None:
    """Logs, the final heartbeat, then the manifest: written last, it is what says the run is complete."""
    _upload_logs(run, log_handler)
    run.check_lease()
    write_status(run.bucket, run.paths, "succeeded", step=manifest.steps)
    write_manifest(run.bucket, run.run_id, manifest)
    logger.info("adapter saved to %s", manifest.adapter)


def _record_interruption(run: _Run, signal_name: str, step: int) -> None:
    """status.json says interrupted (by which signal, at which step); no manifest, so the next start resumes."""
    logger.warning("interrupted by %s at step %d; the next start resumes from the newest complete checkpoint",
                   signal_name, step)
    try:
        write_status(run.bucket, run.paths, "interrupted", step=step, signal=signal_name)
    except Exception as write_error:  # a preempted node may already have lost its network
        logger.error("could not record the interruption in %s: %s", run.bucket.join(run.paths.prefix), write_error)


def _record_failure(run: _Run, error: BaseException) -> None:
    """A failed manifest says why; if the bucket itself is what failed, only the log can say it."""
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    try:
        write_status(run.bucket, run.paths, "failed")
        write_manifest(run.bucket, run.run_id, build_manifest(run, "failed", error=reason[:2000]))
    except Exception as write_error:  # the bucket may be what failed
        logger.error("could not record the failure in %s: %s", run.bucket.join(run.paths.prefix), write_error)


class _RedactingFormatter(logging.Formatter):
    """Log lines with the values of secret environment variables masked: this log is uploaded to the bucket."""

    def __init__(self, fmt: str) -> None:
        from notify.redact import text_redactor

        super().__init__(fmt)
        self._redact = text_redactor(os.environ)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def _attach_log_file(run: _Run) -> logging.Handler:
    path = run.workdir / LOGS_DIR / f"train-{timestamp()}-rank{run.args.process_index}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def _detach_log_file(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    for name in _LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _upload_logs(run: _Run, handler: logging.Handler | None) -> None:
    if handler is not None:
        handler.flush()
    if not run.remote:
        return
    for folder in (LOGS_DIR, TENSORBOARD_DIR):
        local = run.workdir / folder
        if local.is_dir():
            run.bucket.upload_dir(local, run.paths.key(folder))


def _announce(title: str, message: str, tags: list[str]) -> None:
    """A notification from inside the run (e.g. 'resumed'); never fails the run."""
    try:
        from notify.notifier import notify

        notify(message, title=title, tags=tags)
    except Exception as error:  # notifications are best-effort by contract
        logger.warning("notification failed: %s", error)
