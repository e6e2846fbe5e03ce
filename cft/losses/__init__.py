"""Contrastive losses."""

from cft.losses.info_nce import InfoNCELoss

__all__ = ["InfoNCELoss"]
