"""Models: tokenization with EOS, pooling, base-model and LoRA loading, adapter metadata, and the batched encoder."""
