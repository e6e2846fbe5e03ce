"""What `cft export` accepts, importable without torch so that `cft --help` and `cft runs` stay light."""

FORMATS = ("hf", "st", "both")
EXPORT_DTYPES = ("auto", "float32", "bfloat16", "float16")
