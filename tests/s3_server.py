"""A real S3 API on loopback for tests: moto's ThreadedMotoServer on a free port of 127.0.0.1.

    with S3Server(buckets=["cft-test"]) as s3:
        monkeypatch.setenv(...) for each item of s3.env   # AWS_ENDPOINT_URL + test credentials
        open_bucket("s3://cft-test/prefix") ...

A plain helper (no pytest import) so any test module can build its own fixture around it, at the scope it needs.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """moto's S3 server with the given buckets created (S3 bucket names need at least 3 characters)."""

    def __init__(self, buckets: list[str] | tuple[str, ...] = ("cft-test",)) -> None:
        from moto.server import ThreadedMotoServer

        self.buckets = list(buckets)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._client: Any = None
        self.running = False

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server through the standard variables (boto3 reads them)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                config=Config(retries={"max_attempts": 1}, connect_timeout=2),
            )
        return self._client

    def start(self) -> S3Server:
        self._server.start()
        self.running = True
        for bucket in self.buckets:
            self.client.create_bucket(Bucket=bucket)
        return self

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                      for item in page.get("Contents", []))

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(*buckets: str) -> Iterator[S3Server]:
    """A server with these buckets and the environment pointed at it; one attempt per request, so failures are fast."""
    import pytest

    with S3Server(buckets=list(buckets)) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        patch.setenv("CFT_S3_ATTEMPTS", "1")
        yield server
