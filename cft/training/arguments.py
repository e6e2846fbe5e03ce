"""The recipe's `train` section as Hugging Face `TrainingArguments`: which setting goes where, written down once.

Most `TrainSettings` fields are the Trainer's own and are passed through by name (`TRAINER_FIELDS`). The others
are not the Trainer's to see (`NOT_FOR_TRAINER` says where each one goes), and `bf16` and `report_to` are resolved
first (`auto` depends on the GPU and the installed trackers; `eval_steps` defaults to `save_steps` and turns on the
Trainer's evaluation, best-metric tracking and, with early stopping, the restoring of callback state on resume).
The LoRA section goes to `build_lora_model`, never here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from cft.config import TrainSettings
from cft.errors import CFTError

logger = logging.getLogger("cft")

# TrainSettings field -> TrainingArguments field, passed as they are.
TRAINER_FIELDS = {
    "learning_rate": "learning_rate",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "num_epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "max_grad_norm": "max_grad_norm",
    "save_steps": "save_steps",
    "logging_steps": "logging_steps",
    "seed": "seed",
    "dataloader_workers": "dataloader_num_workers",
}
# TrainingArguments fields resolved from a setting before they are passed (see `_use_bf16` and `_report_to`).
RESOLVED_FIELDS = {"bf16": "bf16", "report_to": "report_to", "eval_steps": "eval_steps"}
# TrainSettings fields the Trainer never sees, and who reads them instead.
NOT_FOR_TRAINER = {
    "temperature": "the loss: InfoNCELoss(temperature), cft/losses/info_nce.py",
    "grad_cache_chunk_size": "ContrastiveTrainer.training_step (GradCache), cft/training/trainer.py",
    "gradient_checkpointing": "build_lora_model, which also makes the inputs require grads, cft/modeling/backbone.py",
    "save_total_limit": "CheckpointSync (cft/training/callbacks.py), which deletes an old checkpoint only once its "
                        "successor is complete; the Trainer's own limit is off",
    "eval_data": "DevEvaluator (cft/training/dev_eval.py), called by ContrastiveTrainer.evaluate",
    "eval_batch_size": "DevEvaluator: texts per forward pass of the dev set's encoding",
    "keep_best": "cft/training/run.py, which saves the best checkpoint's weights as the run's adapter",
    "early_stopping_patience": "EarlyStopping (cft/training/dev_eval.py), transformers' EarlyStoppingCallback",
}


def training_arguments(settings: TrainSettings, output_dir: Path) -> Any:
    """The Trainer's arguments for a run whose checkpoints go to `output_dir`."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        **{target: getattr(settings, name) for name, target in TRAINER_FIELDS.items()},
        bf16=_use_bf16(settings.bf16),
        report_to=_report_to(settings.report_to),
        use_cpu=not torch.cuda.is_available(),
        save_strategy="steps",
        save_total_limit=None,  # see NOT_FOR_TRAINER: the Trainer would delete before the next marker exists
        remove_unused_columns=False,  # the collator's row counts are not model inputs, but compute_loss needs them
        label_names=[],
        dataloader_drop_last=True,  # an uneven last batch would change the number of in-batch negatives
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        logging_nan_inf_filter=False,  # a NaN must show (and stop the run), not be averaged away
        **_evaluation(settings),
    )


def _evaluation(settings: TrainSettings) -> dict[str, Any]:
    """The Trainer's evaluation settings: every `eval_steps`, tracking the best `dev_score` (higher is better)."""
    if settings.eval_data is None:
        return {"eval_strategy": "no"}
    return {
        "eval_strategy": "steps",
        "eval_steps": settings.dev_eval_steps,
        "metric_for_best_model": "dev_score",
        "greater_is_better": True,
        # early stopping's count of evaluations without improvement is saved in each checkpoint; restore it
        "restore_callback_states_from_checkpoint": settings.early_stopping_patience is not None,
    }


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
