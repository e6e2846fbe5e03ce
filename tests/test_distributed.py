"""Two gloo processes on loopback give the loss and gradients of one process on the concatenated batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cft.losses import InfoNCELoss

BATCH, DIM, WIDTH = 8, 6, 5


def make_problem():
    generator = torch.Generator().manual_seed(0)
    inputs = {name: torch.randn(BATCH, DIM, generator=generator) for name in ("anchors", "positives", "negatives")}
    weight = torch.randn(WIDTH, DIM, generator=generator)
    return inputs, weight


def single_process():
    inputs, weight = make_problem()
    encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
    encoder.weight.data.copy_(weight)
    loss = InfoNCELoss(0.05)(*(encoder(inputs[name]) for name in ("anchors", "positives", "negatives")))
    loss.backward()
    return loss.item(), encoder.weight.grad.clone()


def worker(rank, world, port, results, negatives_per_rank):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        inputs, weight = make_problem()
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
        encoder.weight.data.copy_(weight)
        negatives = inputs["negatives"][shard][: negatives_per_rank[rank]]
        loss = InfoNCELoss(0.05)(encoder(inputs["anchors"][shard]), encoder(inputs["positives"][shard]), encoder(negatives))
        loss.backward()
        # What DDP does: average the gradients and (for reporting) the losses.
        grad = encoder.weight.grad.clone()
        dist.all_reduce(grad)
        grad /= world
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        results[rank] = (mean_loss.item() / world, grad)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(negatives_per_rank):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(worker, args=(2, free_port(), results, negatives_per_rank), nprocs=2, join=True)
    return dict(results)


def test_two_processes_equal_one_process():
    expected_loss, expected_grad = single_process()
    results = run_two_processes([BATCH // 2, BATCH // 2])
    for rank in (0, 1):
        loss, grad = results[rank]
        assert loss == pytest.approx(expected_loss, abs=1e-5)
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_gradients_differ_without_cross_process_negatives():
    """Guard: the test above must be able to fail. Local-only negatives give a different loss."""
    inputs, weight = make_problem()
    encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
    encoder.weight.data.copy_(weight)
    half = slice(0, BATCH // 2)
    local = InfoNCELoss(0.05)(*(encoder(inputs[name][half]) for name in ("anchors", "positives", "negatives")))
    expected_loss, _ = single_process()
    assert abs(local.item() - expected_loss) > 1e-3


def test_uneven_negatives_across_processes():
    """Rows without hard negatives make ranks hold different numbers of negatives; gathering still works."""
    results = run_two_processes([BATCH // 2, 1])
    assert results[0][0] == pytest.approx(results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


# Several hard negatives per row (two each, so 2 x BATCH negatives) and the Matryoshka loss over three prefixes.
DIMS, WEIGHTS = [WIDTH, 3, 2], [1.0, 0.5, 0.25]


def matryoshka_problem():
    generator = torch.Generator().manual_seed(1)
    inputs = {name: torch.randn(BATCH, DIM, generator=generator) for name in ("anchors", "positives")}
    inputs["negatives"] = torch.randn(2 * BATCH, DIM, generator=generator)  # rows 2i and 2i+1 belong to anchor i
    weight = torch.randn(WIDTH, DIM, generator=generator)
    return inputs, weight


def matryoshka_loss(encoder, anchors, positives, negatives):
    from cft.losses import MatryoshkaInfoNCELoss

    return MatryoshkaInfoNCELoss(0.05, dims=DIMS, weights=WEIGHTS)(encoder(anchors), encoder(positives), encoder(negatives))


def matryoshka_single_process():
    inputs, weight = matryoshka_problem()
    encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
    encoder.weight.data.copy_(weight)
    loss = matryoshka_loss(encoder, inputs["anchors"], inputs["positives"], inputs["negatives"])
    loss.backward()
    return loss.item(), encoder.weight.grad.clone()


def matryoshka_worker(rank, world, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        inputs, weight = matryoshka_problem()
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        own_negatives = slice(2 * rows.start, 2 * rows.stop)
        encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
        encoder.weight.data.copy_(weight)
        loss = matryoshka_loss(encoder, inputs["anchors"][rows], inputs["positives"][rows],
                               inputs["negatives"][own_negatives])
        loss.backward()
        grad = encoder.weight.grad.clone()
        dist.all_reduce(grad)
        grad /= world
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        results[rank] = (mean_loss.item() / world, grad)
    finally:
        dist.destroy_process_group()


def test_matryoshka_with_several_negatives_per_row_two_processes_equal_one():
    expected_loss, expected_grad = matryoshka_single_process()
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(matryoshka_worker, args=(2, free_port(), results), nprocs=2, join=True)
    for rank in (0, 1):
        loss, grad = results[rank]
        assert loss == pytest.approx(expected_loss, abs=1e-5)
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_matryoshka_differs_without_cross_process_negatives():
    """Guard for the test above: local-only candidates give another loss."""
    inputs, weight = matryoshka_problem()
    encoder = torch.nn.Linear(DIM, WIDTH, bias=False)
    encoder.weight.data.copy_(weight)
    half = slice(0, BATCH // 2)
    local = matryoshka_loss(encoder, inputs["anchors"][half], inputs["positives"][half], inputs["negatives"][:BATCH])
    assert abs(local.item() - matryoshka_single_process()[0]) > 1e-3
