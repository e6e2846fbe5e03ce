"""The bucket's small operations on both stores: what a run's readers rely on whatever the object holds."""

from pathlib import Path

import pytest

from cft.storage.bucket import open_bucket
from tests.s3_server import serving

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"  # not UTF-8, like every plot a run writes


@pytest.fixture(params=["local", "s3"])
def bucket(request, tmp_path):
    if request.param == "local":
        yield open_bucket(str(tmp_path / "root"))
        return
    with serving("runs"):
        yield open_bucket("s3://runs/cft")


def test_exists_is_true_for_a_binary_object_and_false_for_a_missing_one(bucket, tmp_path: Path):
    plot = tmp_path / "training.png"
    plot.write_bytes(PNG_HEAD)
    bucket.upload_file(plot, "runs/r1/training.png")
    assert bucket.exists("runs/r1/training.png")
    assert not bucket.exists("runs/r1/missing.png")
    assert not bucket.exists("runs/r1")  # a folder is not an object
