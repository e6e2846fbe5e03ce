"""A memory plan before the first step: will the worst batch of this data fit, and if not, which GradCache chunk does?

Without it, a recipe too big for the machine grows until the kernel kills it (no message, no record) or CUDA runs
out of memory hours in. The plan measures instead of guessing: one forward and backward of a few of the data's
longest rows, at two slice sizes, gives the memory a step needs per row and its fixed part; scaled to the worst
batch (every row padded to the longest sentence of the data) it is compared with what the device has free (GPU:
free memory; CPU: available RAM, within the cgroup's limit when there is one). `CFT_MEMORY_BUDGET` (bytes, or with a
unit: `512MB`, `6GiB`) replaces the measured budget: tests use it to run both paths on tiny models, and a user can
use it to leave room for something else.

With `train.grad_cache_chunk_size: auto` a batch that does not fit turns on GradCache with the largest chunk that
does (same loss, same gradients); a fixed setting that does not fit is one error line naming the setting.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from cft.errors import CFTError
from cft.modeling.pooling import embed_batch
from cft.modeling.tokenization import pad_batch

BUDGET_ENV = "CFT_MEMORY_BUDGET"
HEADROOM = 0.85  # plan to use at most this share of the budget: allocator fragmentation, the loss, the data loader
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "M": 1e6, "MB": 1e6, "MIB": 2**20, "G": 1e9, "GB": 1e9,
          "GIB": 2**30, "T": 1e12, "TB": 1e12, "TIB": 2**40}


def parse_size(text: str, where: str = BUDGET_ENV) -> int:
    """'6GiB' -> 6442450944; plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise CFTError(f"{where} must be a size such as 512MB or 6GiB (got {text!r})")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if abs(size) >= 2**30 else f"{size / 2**20:.0f} MiB"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's cgroup may still allocate (limit - usage), or None without a limit (v2, then v1)."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            return max(limit - usage, 0)
    return None


def available_memory(device: torch.device) -> tuple[int, str]:
    """(bytes this process can still use on `device`, where the number comes from)."""
    override = os.environ.get(BUDGET_ENV)
    if override:
        return parse_size(override), BUDGET_ENV
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # ours to reuse
        return free + cached, "free GPU memory"
    meminfo = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            meminfo[key] = int(value.split()[0]) * 1024
    available = meminfo.get("MemAvailable")
    cgroup = cgroup_headroom()
    if cgroup is not None and (available is None or cgroup < available):
        return cgroup, "cgroup memory limit"
    if available is None:
        raise CFTError(f"cannot read the available memory (/proc/meminfo); set {BUDGET_ENV}, e.g. {BUDGET_ENV}=8GiB")
    return available, "available RAM"


class _LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages alive at once while the mode is on (CPU has no allocator statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self._sizes:
                continue
            self._sizes[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def measure_step_bytes(model: Any, rows: Sequence[Sequence[int]], width: int, pad_id: int, pooling: str,
                       device: torch.device, autocast: Callable[[], Any] = contextlib.nullcontext) -> int:
    """Peak memory above the current level of one training forward and backward of `rows`, padded to `width`.

    Leaves no trace: gradients are cleared and the random state (dropout) is restored.
    """
    padded = [list(ids) + [pad_id] * (width - len(ids)) for ids in rows]
    batch = {name: tensor.to(device) for name, tensor in pad_batch(padded, pad_id).items()}
    batch["attention_mask"][:] = 1  # every row as long as the longest: the worst case
    was_training = model.training
    model.train()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                with autocast():
                    embeddings = embed_batch(model, batch, pooling)
                embeddings.float().pow(2).sum().backward()
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device) - before
            else:
                with _LiveTensorBytes() as tracker:
                    with autocast():
                        embeddings = embed_batch(model, batch, pooling)
                    embeddings.float().pow(2).sum().backward()
                peak = tracker.peak
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return int(peak)


@dataclass
class MemoryPlan:
    """What the worst batch needs, what is available, and the GradCache chunk chosen (0 = one plain pass)."""

    rows: int  # sentences in the worst batch
    width: int  # tokens of its longest sentence (every row padded to it)
    per_row: float  # bytes a step needs per sentence of that width
    fixed: float  # bytes a step needs whatever the rows (gradients, optimizer state, workspace)
    budget: int
    budget_source: str
    chunk: int
    setting: int | str

    def need(self, rows: int) -> float:
        """Peak bytes of a step that runs `rows` sentences through the backbone at once."""
        return self.fixed + self.per_row * rows

    def line(self) -> str:
        step = (f"GradCache in chunks of {self.chunk} sentences, ~{format_size(self.need(self.chunk))}"
                if self.chunk else f"one pass, ~{format_size(self.need(self.rows))}")
        return (f"memory plan: worst batch {self.rows} sentences x {self.width} tokens needs "
                f"~{format_size(self.need(self.rows))}; {format_size(self.budget)} {self.budget_source}; "
                f"{step} (train.grad_cache_chunk_size={self.setting})")


def choose_chunk(plan_rows: int, per_row: float, fixed: float, budget: int, setting: int | str) -> int:
    """The GradCache chunk for this budget: 0 when the whole batch fits; raises when nothing allowed fits."""
    usable = budget * HEADROOM
    fits_rows = math.floor((usable - fixed) / per_row) if per_row > 0 else plan_rows
    need = f"~{format_size(fixed + per_row * plan_rows)} for the worst batch"
    have = f"{format_size(budget)} available"
    if setting == "auto":
        if fits_rows >= plan_rows:
            return 0
        if fits_rows < 1:
            raise CFTError(f"train.grad_cache_chunk_size=auto: even one sentence of the longest length does not fit "
                           f"({format_size(fixed + per_row)} needed, {have}); lower model.max_length, turn on "
                           f"train.gradient_checkpointing, or use a machine with more memory")
        chunks = math.ceil(plan_rows / fits_rows)
        return math.ceil(plan_rows / chunks)  # equal chunks, none larger than what fits
    rows = min(int(setting), plan_rows) if setting else plan_rows
    if rows <= fits_rows:
        return int(setting)
    largest = f"train.grad_cache_chunk_size={fits_rows}" if fits_rows >= 1 else "model.max_length lower"
    raise CFTError(f"train.grad_cache_chunk_size={setting} does not fit in memory ({need}, "
                   f"~{format_size(fixed + per_row * rows)} with this setting, {have}): set "
                   f"train.grad_cache_chunk_size=auto, or {largest}")


def worst_batch(items: Sequence[dict[str, Any]], batch_size: int) -> tuple[int, int, list[list[int]]]:
    """(sentences in the worst batch, the longest sentence's tokens, the data's sentences longest first)."""
    def rows_of(item: dict[str, Any]) -> list[list[int]]:
        return [item["anchor"], item["positive"], *item["negatives"]]

    longest_items = sorted(items, key=lambda item: max(len(row) for row in rows_of(item)), reverse=True)[:batch_size]
    # a batch may draw the rows with the most hard negatives: each of its items counts with the most any row has
    rows = min(batch_size, len(items)) * max(len(rows_of(item)) for item in items)
    sentences = sorted((row for item in longest_items for row in rows_of(item)), key=len, reverse=True)
    return rows, len(sentences[0]), sentences


def _agree_across_processes(per_row: float, fixed: float, budget: int, device: torch.device) -> tuple[float, float, int]:
    """The worst numbers of all processes, so every process picks the same chunk (or stops with the same error)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return per_row, fixed, budget
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    needs = torch.tensor([per_row, fixed], dtype=torch.float64, device=where)
    room = torch.tensor([float(budget)], dtype=torch.float64, device=where)
    dist.all_reduce(needs, op=dist.ReduceOp.MAX)
    dist.all_reduce(room, op=dist.ReduceOp.MIN)
    return float(needs[0]), float(needs[1]), int(room[0])


def plan_memory(model: Any, items: Sequence[dict[str, Any]], batch_size: int, setting: int | str, pad_id: int,
                pooling: str, device: torch.device, autocast: Callable[[], Any] = contextlib.nullcontext,
                optimizer_bytes_per_param: int = 8) -> MemoryPlan:
    """Measures the data's worst batch on `model` and picks the GradCache chunk (see the module docstring).

    AdamW keeps two fp32 moments per trainable parameter (`optimizer_bytes_per_param`), allocated at the first
    optimizer step: they are counted in the fixed part although the probe does not create them. The model is moved
    to `device` first (the Trainer would do it next anyway), so the probe runs where training will.
    """
    model.to(device)
    budget, source = available_memory(device)  # before the probe: memory it frees may stay with the allocator
    rows, width, sentences = worst_batch(items, batch_size)
    small = max(1, min(2, rows // 2))
    large = min(2 * small, rows)
    measured = {}
    for count in sorted({small, large}):
        probe = [sentences[i % len(sentences)] for i in range(count)]
        measured[count] = measure_step_bytes(model, probe, width, pad_id, pooling, device, autocast)
    if len(measured) == 2:
        per_row = max((measured[large] - measured[small]) / (large - small), 0.0)
    else:
        per_row = float(measured[small])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = max(measured[small] - per_row * small, 0.0) + trainable * optimizer_bytes_per_param
    per_row, fixed, budget = _agree_across_processes(per_row, fixed, budget, device)
    chunk = choose_chunk(rows, per_row, fixed, budget, setting)
    return MemoryPlan(rows, width, per_row, fixed, budget, source, chunk, setting)
