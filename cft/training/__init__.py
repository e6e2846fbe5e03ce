"""Training: the Trainer subclass, GradCache, run orchestration (bucket, resume, manifest)."""
