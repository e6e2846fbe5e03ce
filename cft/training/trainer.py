"""A Trainer that computes InfoNCE from one backbone pass, with optional gradient caching.

Only `compute_loss`, `training_step` (for GradCache) and `evaluate` (the dev score, `cft.training.dev_eval`) are
overridden; saving, resuming, schedules, logging, best-metric tracking and distributed training are the Trainer's
own. The model is the PEFT-wrapped backbone, so checkpoints hold only the adapter and the Trainer knows how to reload
it.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
from transformers import Trainer

from cft.errors import TrainingDiverged
from cft.losses.info_nce import InfoNCELoss, split_embeddings
from cft.modeling.pooling import embed_batch
from cft.training.dev_eval import DevEvaluator, log_evaluation


class ContrastiveTrainer(Trainer):
    def __init__(self, *args: Any, loss_fn: InfoNCELoss, pooling: str = "last_token", grad_cache_chunk_size: int = 0,
                 dev_evaluator: DevEvaluator | None = None, **kwargs: Any) -> None:
        if dev_evaluator is not None:
            kwargs.setdefault("eval_dataset", dev_evaluator.devset)  # the Trainer wants one when it evaluates
        super().__init__(*args, **kwargs)
        self.dev_evaluator = dev_evaluator
        self.loss_fn = loss_fn
        self.pooling = pooling
        self.grad_cache_chunk_size = grad_cache_chunk_size
        self._window = {"triplets": 0, "tokens": 0, "since": time.perf_counter()}

    def _count(self, inputs: dict[str, Any]) -> None:
        self._window["triplets"] += int(inputs["n_anchors"])
        # from the collator, not the mask: reading a GPU tensor here would stall every step
        self._window["tokens"] += inputs["n_tokens"]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds this process's throughput since the previous log line (triplets/s, tokens/s)."""
        if "loss" in logs:
            if not math.isfinite(float(logs["loss"])):
                self._close_progress_bar()
                raise TrainingDiverged(
                    f"non-finite training loss ({logs['loss']}) at step {self.state.global_step}: stopping instead of "
                    "spending GPU hours on it; lower train.learning_rate or check the data. The last complete "
                    "checkpoint is kept.")
            elapsed = max(time.perf_counter() - self._window["since"], 1e-9)
            logs["triplets_per_second"] = round(self._window["triplets"] / elapsed, 2)
            logs["tokens_per_second"] = round(self._window["tokens"] / elapsed, 1)
            self._window = {"triplets": 0, "tokens": 0, "since": time.perf_counter()}
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """The dev score (Spearman x100) and its seconds, logged with the loss; the Trainer then tracks the best."""
        if self.dev_evaluator is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics = self.dev_evaluator.metrics(self.model, is_main=self.args.process_index == 0)
        if self.args.process_index == 0:
            log_evaluation(self.state, metrics, self.dev_evaluator.devset)
        self.log(dict(metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _close_progress_bar(self) -> None:
        """Ends the progress bar's line, so that the error printed next starts a line of its own."""
        for callback in self.callback_handler.callbacks:
            bar = getattr(callback, "training_bar", None)
            if bar is not None:
                bar.close()
                callback.training_bar = None

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if model.training:
            self._count(inputs)
        embeddings = embed_batch(model, inputs, self.pooling)  # (rows, dim)
        loss = self.loss_fn(*split_embeddings(embeddings, inputs["n_anchors"], inputs["n_negatives"]))
        return (loss, embeddings) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        if not self.grad_cache_chunk_size:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        self._count(inputs)
        loss = grad_cache_step(
            model,
            inputs,
            loss_fn=self.loss_fn,
            pooling=self.pooling,
            chunk_rows=self.grad_cache_chunk_size,
            backward=self.accelerator.backward,
            autocast=self.compute_loss_context_manager,
            no_sync=getattr(self.accelerator, "no_sync", None),
            # as the Trainer's own step divides each micro-batch's loss, so that G micro-batches sum to one mean
            loss_scale=1.0 / self.current_gradient_accumulation_steps,
        )
        return loss / self.current_gradient_accumulation_steps


class _RandomState:
    """Captures CPU and CUDA RNG so a chunk's re-run draws the same dropout masks as its first run."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    @contextlib.contextmanager
    def restored(self):  # type: ignore[no-untyped-def]
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def grad_cache_step(model: Any, inputs: dict[str, Any], *, loss_fn: InfoNCELoss, pooling: str, chunk_rows: int,
                    backward: Any = None, autocast: Any = None, no_sync: Any = None,
                    loss_scale: float = 1.0) -> torch.Tensor:
    """One GradCache step (Gao et al., 2021, arXiv 2101.06983): same loss and gradients as the plain step.

    1. embed the rows in chunks without a graph; 2. compute the loss on all embeddings and its gradient with respect
    to each embedding; 3. re-run each chunk with a graph and back-propagate that cached gradient. Memory then scales
    with the chunk, not the batch, so contrastive batches of hundreds of triplets fit on one GPU.

    With several chunks, rows are grouped by length (longest first) so each chunk pads only to its own longest
    sentence: on SNLI at batch 512 that halves the padded tokens. Lengths come from the collator (`lengths`), so
    no device sync is needed to plan the chunks.

    `loss_scale` multiplies the gradients back-propagated (1/G under G gradient-accumulation steps, as the Trainer
    scales its own loss); the loss returned is unscaled.
    """
    backward = backward or (lambda tensor: tensor.backward())
    autocast = autocast or contextlib.nullcontext
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows = input_ids.shape[0]
    lengths = inputs.get("lengths") or mask.sum(dim=1).tolist()
    order = sorted(range(rows), key=lambda row: -lengths[row]) if rows > chunk_rows else list(range(rows))
    device = input_ids.device
    chunks = []
    for start in range(0, rows, chunk_rows):
        members = order[start:start + chunk_rows]
        index = torch.tensor(members, device=device)
        width = max(lengths[row] for row in members)  # right padding: columns past the longest row are all pad
        chunks.append({"input_ids": input_ids[index, :width], "attention_mask": mask[index, :width]})
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_RandomState(device))
            with autocast():
                cached.append(embed_batch(model, chunk, pooling).float())
    in_chunk_order = torch.cat(cached).requires_grad_(True)  # (rows, dim), rows in `order`
    inverse = torch.empty(rows, dtype=torch.long, device=device)
    inverse[torch.tensor(order, device=device)] = torch.arange(rows, device=device)
    embeddings = in_chunk_order[inverse]  # back to batch order for the loss
    loss = loss_fn(*split_embeddings(embeddings, inputs["n_anchors"], inputs["n_negatives"]))
    loss.backward()
    gradients = in_chunk_order.grad * loss_scale
    offset = 0
    for index, (chunk, state) in enumerate(zip(chunks, states)):
        count = chunk["input_ids"].shape[0]
        last = index == len(chunks) - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync(model)
        with sync, state.restored():
            with autocast():
                chunk_embeddings = embed_batch(model, chunk, pooling)
            surrogate = (chunk_embeddings.float() * gradients[offset:offset + count]).sum()
            backward(surrogate)
        offset += count
    return loss.detach()
