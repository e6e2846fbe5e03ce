"""All-gather that keeps exact gradients, for negatives shared across processes.

`torch.distributed.all_gather` returns tensors without a graph, so embeddings from other processes would act as
constants and each process would miss the gradient its own embeddings receive from the others' losses. Here the
forward gathers every rank's rows (ranks may hold different numbers of rows), and the backward sums the gradient of
the gathered tensor over all ranks (all-reduce) and hands each rank the slice of its own rows. With DDP averaging
parameter gradients, the result equals one process computing the mean loss over the concatenated batch.
Only all-gather and all-reduce are used, so it runs on gloo (CPU) as well as NCCL.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        world = dist.get_world_size()
        size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        pieces = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(pieces, padded.contiguous())
        gathered = torch.cat([piece[:count] for piece, count in zip(pieces, counts)])
        rank = dist.get_rank()
        ctx.start = sum(counts[:rank])
        ctx.count = counts[rank]
        offsets = torch.tensor(counts, device=tensor.device)
        ctx.mark_non_differentiable(offsets)
        return gathered, offsets

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor, _grad_offsets: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        grad = grad_gathered.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start: ctx.start + ctx.count]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows of every rank concatenated in rank order, and the offset of this rank's first row."""
    rank, world = distributed_world()
    if world == 1:
        return tensor, 0
    gathered, counts = _GatherWithGrad.apply(tensor)
    return gathered, int(counts[:rank].sum().item())
