"""Adapters out of cft: a merged Hugging Face model and a sentence-transformers model (`cft export`).

`ExportResult` and `export_adapter` load on first use (they need torch); the options do not.
"""

from typing import Any

from cft.export.options import EXPORT_DTYPES, FORMATS

__all__ = ["EXPORT_DTYPES", "FORMATS", "ExportResult", "export_adapter"]


def __getattr__(name: str) -> Any:
    if name in ("ExportResult", "export_adapter"):
        from cft.export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'cft.export' has no attribute {name!r}")
