"""cft: contrastive fine-tuning of small causal language models into text-embedding models."""

__version__ = "0.1.0"
