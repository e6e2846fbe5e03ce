"""What `cft export` accepts, importable without torch so that `cft --help` and `cft runs` stay light."""

FORMATS = ("hf", "st", "both")
EXPORT_DTYPES = ("auto", "float32", "bfloat16", "float16")


def pushed_format(fmt: str) -> str:
    """The folder `--push-to-hub` puts at the repository root: the sentence-transformers one when there is one (it is
    also a plain transformers model), else the merged model."""
    return "st" if fmt in ("st", "both") else "hf"
