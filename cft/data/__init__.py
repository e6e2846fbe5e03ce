"""Training data: triplet files in, validated `Triplet`s out; the collator that turns them into one padded batch."""

from cft.data.triplets import DataReport, Triplet, load_triplets, write_triplets

__all__ = ["DataReport", "Triplet", "load_triplets", "write_triplets"]
