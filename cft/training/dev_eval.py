"""Evaluation during training: the dev score every `train.eval_steps`, the best checkpoint kept, early stopping.

The Trainer's own machinery does the bookkeeping: `metric_for_best_model="dev_score"` makes it track the best score
and its step in `TrainerState` (saved in every checkpoint, so a resumed run keeps its best-so-far), and
transformers' `EarlyStoppingCallback` counts evaluations without improvement (its counter is saved in the checkpoint
too). cft adds three things:

- `DevEvaluator`: the score itself, on the main process only, with the encoder `cft eval` uses; the other processes
  wait for it at a broadcast, so every process agrees on the score and on whether to stop (no deadlock);
- `DevSchedule`: the last step is evaluated too, and a new best score forces a checkpoint at its step, so the best
  model always has one, whatever `train.save_steps` is; `CheckpointSync` never deletes it;
- `dev_metrics`: what the manifest records (dev_score, best_dev_score, best_step, stopped_early_at_step).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from transformers import EarlyStoppingCallback, TrainerCallback

from cft.config import ModelConfig

if TYPE_CHECKING:  # cft.evaluation imports mteb; a run without a dev set never needs it
    from cft.evaluation.dev_set import DevSet

logger = logging.getLogger("cft")

METRIC = "dev_score"  # metric_for_best_model; the Trainer logs it as eval_dev_score (TensorBoard/W&B: eval/dev_score)
SCORE_KEY = f"eval_{METRIC}"
SECONDS_KEY = "eval_dev_seconds"


class DevEvaluator:
    """Scores the model being trained on a dev set, as `cft eval` would score its adapter."""

    def __init__(self, devset: DevSet, tokenizer: Any, model_config: ModelConfig, batch_size: int) -> None:
        self.devset = devset
        self.tokenizer = tokenizer
        self.model_config = model_config
        self.batch_size = batch_size

    def metrics(self, model: Any, is_main: bool) -> dict[str, float]:
        """{eval_dev_score, eval_dev_seconds}, computed on the main process and broadcast to the others.

        If scoring fails on the main process, the others are told (instead of waiting for a score that never
        comes) and fail too."""
        if not is_main:
            result = _from_main_process({})
            if "failed" in result:
                raise RuntimeError(f"the dev evaluation failed on the main process ({result['failed']})")
            return result
        try:
            result = self._score(model)
        except Exception as error:
            _from_main_process({"failed": f"{type(error).__name__}: {error}"[:500]})
            raise
        return _from_main_process(result)

    def _score(self, model: Any) -> dict[str, float]:
        from cft.modeling.encoder import TextEncoder
        from cft.modeling.metadata import AdapterMetadata

        was_training = model.training
        started = time.perf_counter()
        device = next(model.parameters()).device
        encoder = TextEncoder(model, self.tokenizer, AdapterMetadata(self.model_config), name="training",
                              revision="training", device=device)
        try:
            score = self.devset.score(encoder, self.batch_size)
        finally:
            model.train(was_training)
        return {SCORE_KEY: round(score, 4) if math.isfinite(score) else score,
                SECONDS_KEY: round(time.perf_counter() - started, 2)}


def _from_main_process(result: dict[str, float]) -> dict[str, float]:
    """The main process's result on every process; the others block here until the main one has scored."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return result
    box = [result]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class DevSchedule(TrainerCallback):
    """When to evaluate and save beyond the Trainer's own `eval_steps` and `save_steps`.

    The last step is always evaluated, so the manifest's dev_score is the published model's (unless keep_best
    publishes an earlier one), whether or not `max_steps` is a multiple of `eval_steps`. A new best dev score saves a
    checkpoint at its step, so `keep_best` always has the best model to keep: `on_evaluate` runs inside
    `Trainer.evaluate`, before the Trainer updates `state.best_metric` and decides whether to save at this step;
    every process sees the same (broadcast) score, so they agree.
    """

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_evaluate = True

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        score = (metrics or {}).get(SCORE_KEY)
        if score is None or not math.isfinite(score):
            return
        if state.best_metric is None or score > state.best_metric:
            control.should_save = True


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, without its warning about `load_best_model_at_end` (cft keeps the best
    checkpoint itself, see `train.keep_best`)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        pass

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], **kwargs: Any) -> None:
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if control.should_training_stop and self.stopped and state.is_world_process_zero:
            logger.info("stopping early at step %d: the dev score has not improved for %d evaluations (best %.2f at "
                        "step %d)", state.global_step, self.early_stopping_patience, state.best_metric,
                        state.best_global_step)

    @property
    def stopped(self) -> bool:
        return self.early_stopping_patience_counter >= self.early_stopping_patience


def log_evaluation(state: Any, metrics: dict[str, float], devset: DevSet) -> None:
    """One line per evaluation in the run's log, with the best so far (the Trainer's state is updated after)."""
    score, previous = metrics[SCORE_KEY], state.best_metric
    if math.isfinite(score) and (previous is None or score > previous):
        best = "a new best"
    elif previous is not None and math.isfinite(previous):
        best = f"best {previous:.2f} at step {state.best_global_step}"
    else:
        best = "no best yet"
    logger.info("step %d: dev score %.2f on %s (%d pairs, %.1fs), %s", state.global_step, score, devset.name,
                len(devset), metrics[SECONDS_KEY], best)


def early_stopping(trainer: Any) -> EarlyStopping | None:
    """The run's early-stopping callback (a resumed Trainer replaces the instance it was given with a restored one)."""
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EarlyStopping)), None)


def dev_metrics(trainer: Any, adapter_step: int) -> dict[str, float | int | None]:
    """The manifest's dev metrics: the last score, the best one and its step, the step the adapter is from, and the
    step an early stop happened at; empty for a run without evaluation."""
    scores = [entry for entry in trainer.state.log_history if SCORE_KEY in entry]
    if not scores:
        return {}
    state = trainer.state

    def number(value: Any) -> float | None:
        return round(float(value), 4) if value is not None and math.isfinite(value) else None

    metrics: dict[str, float | int | None] = {
        "dev_score": number(scores[-1][SCORE_KEY]),
        "best_dev_score": number(state.best_metric),
        "best_step": state.best_global_step or None,
        "dev_evaluations": len(scores),
        "adapter_step": adapter_step,
    }
    stopper = early_stopping(trainer)
    if stopper is not None and stopper.stopped and state.global_step < state.max_steps:
        metrics["stopped_early_at_step"] = state.global_step
    return metrics
