"""The batched encoder returns exactly what one-at-a-time encoding does, in the caller's order."""

import numpy as np
import pytest

from cft.modeling.encoder import TextEncoder
from conftest import sentences


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return TextEncoder.from_base(str(tiny_model_dir), device="cpu", dtype="float32")


def test_length_sorted_batches_keep_input_order(encoder):
    texts = sentences(37, seed=3) + ["a cat .", "the band is playing a guitar near the river and the beach and the park ."]
    batched = encoder.encode(texts, batch_size=8)
    one_by_one = np.stack([encoder.encode([text], batch_size=1)[0] for text in texts])
    assert batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_vectors_are_normalized(encoder):
    vectors = encoder.encode(sentences(5))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_prompt_template_changes_the_input(tiny_model_dir):
    plain = TextEncoder.from_base(str(tiny_model_dir), device="cpu")
    prompted = TextEncoder.from_base(str(tiny_model_dir), device="cpu",
                                     prompt_template='This sentence : "{}" means in one word:"')
    assert not np.allclose(plain.encode(["a cat ."]), prompted.encode(["a cat ."]))
