"""One GradCache step gives the loss and gradients of the plain step."""

import copy

import pytest
import torch

from cft.config import LoraSettings, ModelConfig
from cft.data.collator import TokenizedTriplets, TripletCollator, split_embeddings
from cft.data.triplets import Triplet
from cft.losses import InfoNCELoss, MatryoshkaInfoNCELoss
from cft.modeling.backbone import build_lora_model, load_backbone, load_tokenizer
from cft.modeling.encoder import embed_batch
from cft.training.trainer import grad_cache_step
from conftest import sentences


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir), attn_implementation="eager", max_length=32)
    tokenizer = load_tokenizer(config)
    torch.manual_seed(0)
    model = build_lora_model(load_backbone(config), LoraSettings(r=4, alpha=8, dropout=0.0))
    texts = sentences(36, seed=5)
    triplets = [Triplet(texts[i], texts[i + 1], texts[i + 2] if i % 6 else None) for i in range(0, 36, 3)]
    batch = TripletCollator(tokenizer.pad_token_id)(list(TokenizedTriplets(triplets, tokenizer, 32, show_progress=False)))
    return model, batch


@pytest.fixture(scope="module")
def several_negatives(setup, tiny_model_dir):
    """Rows with 0, 1, 2 and 3 hard negatives, all candidates of every anchor."""
    model, _ = setup
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), max_length=32))
    texts = sentences(40, seed=8)
    triplets = [Triplet(texts[i], texts[i + 1], tuple(texts[i + 2:i + 2 + i % 4])) for i in range(0, 36, 5)]
    batch = TripletCollator(tokenizer.pad_token_id)(list(TokenizedTriplets(triplets, tokenizer, 32, show_progress=False)))
    assert batch["n_negatives"] == sum(len(t.negatives) for t in triplets) > len(triplets)
    return model, batch


def plain_step(model, batch, loss_fn):
    loss = loss_fn(*split_embeddings(embed_batch(model, batch, "last_token"), batch["n_anchors"], batch["n_negatives"]))
    loss.backward()
    return loss.detach()


def lora_grads(model):
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}


@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_cached_step_equals_plain_step(setup, chunk_rows):
    model, batch = setup
    loss_fn = InfoNCELoss(0.05)
    plain_model, cached_model = copy.deepcopy(model), copy.deepcopy(model)
    plain_model.train(), cached_model.train()
    expected = plain_step(plain_model, batch, loss_fn)
    got = grad_cache_step(cached_model, batch, loss_fn=loss_fn, pooling="last_token", chunk_rows=chunk_rows)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    expected_grads, got_grads = lora_grads(plain_model), lora_grads(cached_model)
    assert expected_grads.keys() == got_grads.keys() and expected_grads
    assert any(grad.abs().sum() > 0 for grad in expected_grads.values())
    for name in expected_grads:
        torch.testing.assert_close(got_grads[name], expected_grads[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("loss_fn", [InfoNCELoss(0.05), MatryoshkaInfoNCELoss(0.05, dims=[32, 16, 8], weights=[1, 0.5, 0.25])],
                         ids=["info_nce", "matryoshka"])
def test_cached_step_equals_plain_step_with_several_negatives(several_negatives, loss_fn):
    model, batch = several_negatives
    plain_model, cached_model = copy.deepcopy(model), copy.deepcopy(model)
    plain_model.train(), cached_model.train()
    expected = plain_step(plain_model, batch, loss_fn)
    got = grad_cache_step(cached_model, batch, loss_fn=loss_fn, pooling="last_token", chunk_rows=4)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    expected_grads = lora_grads(plain_model)
    assert any(grad.abs().sum() > 0 for grad in expected_grads.values())
    for name, grad in expected_grads.items():
        torch.testing.assert_close(lora_grads(cached_model)[name], grad, atol=1e-5, rtol=1e-4)


def test_dropout_masks_are_replayed(tiny_model_dir):
    """With dropout on, each chunk's re-run must draw the masks of its no-grad pass, or the gradients are wrong.

    With one chunk, the no-grad pass draws exactly the masks of the plain step (same seed), so the cached step equals
    the plain step only if the re-run replays them.
    """
    config = ModelConfig(name_or_path=str(tiny_model_dir), attn_implementation="eager", max_length=32)
    tokenizer = load_tokenizer(config)
    torch.manual_seed(0)
    model = build_lora_model(load_backbone(config), LoraSettings(r=4, alpha=8, dropout=0.5))
    texts = sentences(12, seed=6)
    triplets = [Triplet(texts[i], texts[i + 1], texts[i + 2]) for i in range(0, 12, 3)]
    batch = TripletCollator(tokenizer.pad_token_id)(list(TokenizedTriplets(triplets, tokenizer, 32, show_progress=False)))
    model.train()
    plain, cached = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(7)
    expected = plain_step(plain, batch, InfoNCELoss(0.05))
    torch.manual_seed(7)
    got = grad_cache_step(cached, batch, loss_fn=InfoNCELoss(0.05), pooling="last_token", chunk_rows=1000)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    for name, grad in lora_grads(plain).items():
        torch.testing.assert_close(lora_grads(cached)[name], grad, atol=1e-5, rtol=1e-4)


def test_grad_cache_with_gradient_accumulation_matches_the_trainers_own_step(tiny_model_dir, triplets_csv, tmp_path):
    """With G accumulation steps the Trainer divides each micro-batch's loss by G; GradCache must too.

    One optimizer step (SGD, no clipping) over two micro-batches, plain and cached: the updated weights must agree.
    """
    from transformers import TrainingArguments

    from cft.config import DataConfig
    from cft.data.triplets import load_triplets
    from cft.training.trainer import ContrastiveTrainer

    config = ModelConfig(name_or_path=str(tiny_model_dir), attn_implementation="eager", max_length=32)
    tokenizer = load_tokenizer(config)
    triplets, _ = load_triplets(DataConfig(train_file=str(triplets_csv)))
    dataset = TokenizedTriplets(triplets[:16], tokenizer, 32, show_progress=False)
    torch.manual_seed(0)
    start = build_lora_model(load_backbone(config), LoraSettings(r=4, alpha=8, dropout=0.0))
    updated = {}
    for chunk in (0, 5):
        model = copy.deepcopy(start)
        args = TrainingArguments(output_dir=str(tmp_path / f"gc{chunk}"), per_device_train_batch_size=4,
                                 gradient_accumulation_steps=2, max_steps=1, learning_rate=1.0, optim="sgd",
                                 lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, use_cpu=True,
                                 report_to=[], save_strategy="no", remove_unused_columns=False, label_names=[],
                                 dataloader_drop_last=True, seed=3, disable_tqdm=True)
        trainer = ContrastiveTrainer(model=model, args=args, train_dataset=dataset,
                                     data_collator=TripletCollator(tokenizer.pad_token_id), loss_fn=InfoNCELoss(0.05),
                                     grad_cache_chunk_size=chunk)
        trainer.train()
        updated[chunk] = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    moved = [(updated[0][name] - param).abs().max().item()
             for name, param in start.named_parameters() if param.requires_grad]
    assert max(moved) > 1e-4  # the step did something
    for name, weight in updated[0].items():
        torch.testing.assert_close(updated[5][name], weight, atol=1e-5, rtol=1e-4)
