"""FLOP counts for LoRA contrastive training, and the GPU's measured matmul rate they are divided by.

Model FLOPs (what MFU counts) are the work the embedding objective needs, on real tokens only:

    per real token:  4 * N_base + 6 * N_lora + attention
      forward                      2 * N_base + 2 * N_lora
      backward, activation grads   2 * N_base + 2 * N_lora   (the base is frozen: no weight gradients for it)
      backward, LoRA weight grads              2 * N_lora
    attention, per sequence of n real tokens (causal: token t scores t keys; QK^T and PV, each 2 * d_q FLOPs
    per query-key pair; backward = 2x forward):  3 * 2 * L * d_q * n * (n + 1)

N_base counts the weights of every nn.Linear of the transformer body (no embeddings, no LM head); N_lora the LoRA
A and B matrices; L layers; d_q = heads * head_dim. Norms, activations and the loss are left out (as in PaLM's
MFU, arXiv 2204.02311, which would count 6N for full fine-tuning where LoRA needs 4N).

Executed FLOPs (what HFU counts) are what the GPU was made to do: every padded position; the full T x T score
matrix (an attention kernel with a padding mask computes it all); the LM head's forward where the full causal LM is
run (the published approach: its logits are computed and thrown away); and GradCache's extra no-grad forward.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    layers: int
    q_dim: int
    n_base: int  # weights of the body's nn.Linear layers
    n_lora: int  # LoRA A and B weights
    lm_head: int  # vocab * hidden (forward only, in the full-LM reference)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def shape_of(model: Any, size: Any) -> Shape:
    """Counts the matmul weights of a (PEFT-wrapped) model as built, so the FLOPs follow what actually runs."""
    import torch

    n_base = n_lora = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        if ".lora_" in name:
            n_lora += module.weight.numel()
        else:
            n_base += module.weight.numel()
    head_dim = size.hidden // size.heads
    return Shape(layers=size.layers, q_dim=size.heads * head_dim, n_base=n_base, n_lora=n_lora,
                 lm_head=size.vocab * size.hidden)


def model_flops(shape: Shape, lengths: list[int]) -> float:
    """Useful training FLOPs for sequences of these real lengths (see the module docstring)."""
    tokens = sum(lengths)
    dense = (4 * shape.n_base + 6 * shape.n_lora) * tokens
    attention = 6 * shape.layers * shape.q_dim * sum(n * (n + 1) for n in lengths)
    return float(dense + attention)


def executed_flops(shape: Shape, blocks: list[tuple[int, int]], *, extra_forwards: int = 0,
                   lm_head: bool = False) -> float:
    """FLOPs the GPU ran for padded blocks of (rows, width), each trained once (forward + backward), plus
    `extra_forwards` no-grad forwards of every block (GradCache: 1) and the LM head's forward (`lm_head`)."""
    total = 0.0
    for rows, width in blocks:
        tokens = rows * width
        forward = (2 * shape.n_base + 2 * shape.n_lora) * tokens + 4 * shape.layers * shape.q_dim * width * tokens
        backward = (2 * shape.n_base + 4 * shape.n_lora) * tokens + 8 * shape.layers * shape.q_dim * width * tokens
        total += forward * (1 + extra_forwards) + backward
        if lm_head:
            total += 2 * shape.lm_head * tokens
    return total


def measure_matmul_peak(device: Any, *, size: int | None = None, repeats: int = 20) -> dict[str, Any]:
    """The rate MFU is measured against: median of timed square matmuls, bf16 on a GPU (fp32 on CPU).

    Random normal inputs (zeros run faster than real data on some GPUs); three warm-up products first.
    """
    import torch

    device = torch.device(device)
    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    n = size or (8192 if on_gpu else 512)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    for _ in range(3):
        torch.matmul(a, b)
    rates = []
    if on_gpu:
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(a, b)
            stop.record()
            stop.synchronize()
            rates.append(2 * n**3 / (start.elapsed_time(stop) / 1e3))
    else:
        import time

        for _ in range(max(3, repeats // 4)):
            began = time.perf_counter()
            torch.matmul(a, b)
            rates.append(2 * n**3 / (time.perf_counter() - began))
    del a, b
    return {"flops_per_s": statistics.median(rates), "dtype": str(dtype).replace("torch.", ""), "n": n,
            "repeats": len(rates), "what": f"median of {len(rates)} {n}x{n}x{n} {str(dtype).replace('torch.', '')} "
                                          "matmuls (random normal inputs, after 3 warm-ups)"}
