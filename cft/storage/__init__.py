"""Where runs live: a bucket root that is a local folder or an s3:// URI (any S3-compatible store)."""

from cft.storage.bucket import Bucket, materialize, open_bucket

__all__ = ["Bucket", "materialize", "open_bucket"]
