"""Contrastive losses."""

from cft.losses.info_nce import InfoNCELoss
from cft.losses.matryoshka import MatryoshkaInfoNCELoss

__all__ = ["InfoNCELoss", "MatryoshkaInfoNCELoss"]
