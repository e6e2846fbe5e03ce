"""Adapters out of cft: a merged Hugging Face model and a sentence-transformers model (`cft export`)."""

from cft.export.exporter import FORMATS, ExportResult, export_adapter

__all__ = ["FORMATS", "ExportResult", "export_adapter"]
