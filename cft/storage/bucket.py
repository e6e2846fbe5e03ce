"""A bucket root, local or S3, with the few operations runs need.

Writes are all-or-nothing for readers: a local file is written under a temporary name and renamed; an S3 object
appears only when its upload completes. A folder (checkpoint, adapter) is complete only once the marker or manifest
written after it exists: see `upload_dir(marker=...)`. S3 is reached with boto3 (its transfer manager for files,
bounded retries and timeouts, so a dead endpoint fails the job with the reason instead of hanging it); the client
and its settings are `notify.storage.s3_client`'s, shared with the notifier. Any S3-compatible store works through
the standard `AWS_ENDPOINT_URL`.

Conditional writes (`write_if_absent`, `write_if_match`) let one process own an object (a run's lease) against
others: S3's `If-None-Match: *` and `If-Match: <etag>` on PutObject (AWS S3, Cloudflare R2, MinIO and Ceph honour
them; a store that ignores them turns the lease into a best-effort check), and on a local folder an exclusive
create (a hard link) and a compare-and-swap under `flock`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cft.errors import CFTError
from notify.storage import StorageError, s3_client

CACHE_DIR = Path(os.environ.get("CFT_CACHE", Path.home() / ".cache" / "cft"))


class PreconditionFailed(Exception):
    """A conditional write lost: the object already exists (if absent) or changed or vanished (if match)."""


class Bucket(ABC):
    """Keys are '/'-separated paths relative to the bucket root."""

    uri: str

    def join(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *[part.strip("/") for part in parts if part]])

    def local_path(self, key: str) -> Path | None:
        """The local path of a key when the bucket is a local folder, else None."""
        return None

    @abstractmethod
    def read_text(self, key: str) -> str | None:
        """The object's text, or None when it does not exist."""

    @abstractmethod
    def write_text(self, key: str, text: str) -> None: ...

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[str, str] | None:
        """(text, etag) of the object, or None when it does not exist; the etag is what `write_if_match` takes."""

    @abstractmethod
    def write_if_absent(self, key: str, text: str) -> str:
        """Creates the object only if no object has the key; returns its etag, else raises PreconditionFailed."""

    @abstractmethod
    def write_if_match(self, key: str, text: str, etag: str) -> str:
        """Replaces the object only if it still has `etag`; returns the new etag, else raises PreconditionFailed."""

    @abstractmethod
    def upload_file(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def download_file(self, key: str, local: Path) -> None: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """All keys under a prefix (recursively)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def delete_key(self, key: str) -> None:
        """Deletes one object; nothing happens when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object has the key, whatever it holds (plots and weights are not text)."""

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of a prefix."""
        prefix = prefix.strip("/") + "/"
        names = {key[len(prefix):].split("/", 1)[0] for key in self.list_keys(prefix) if "/" in key[len(prefix):]}
        return sorted(names)

    def upload_dir(self, local_dir: Path, prefix: str, marker: str | None = None) -> None:
        """Uploads a folder; `marker` (a file name) is written last, so its presence means the folder is whole."""
        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file() and p.name != marker)
        for path in files:
            self.upload_file(path, f"{prefix.strip('/')}/{path.relative_to(local_dir).as_posix()}")
        if marker:
            self.write_text(f"{prefix.strip('/')}/{marker}", "complete\n")

    def download_dir(self, prefix: str, local_dir: Path, marker: str | None = None) -> Path:
        """Downloads a folder; `marker` (a file name) comes last, as on upload, so a local marker means whole."""
        prefix = prefix.strip("/") + "/"
        keys = self.list_keys(prefix)
        if not keys:
            raise CFTError(f"{self.join(prefix)}: nothing there")
        for key in sorted(keys, key=lambda k: k[len(prefix):] == marker):  # stable: the marker moves to the end
            self.download_file(key, Path(local_dir) / key[len(prefix):])
        return Path(local_dir)


class LocalBucket(Bucket):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.uri = str(self.root)

    def local_path(self, key: str) -> Path:
        return self.root / key.strip("/")

    def read_text(self, key: str) -> str | None:
        try:
            return self.local_path(key).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def write_text(self, key: str, text: str) -> None:
        atomic_write_text(self.local_path(key), text)

    def read_versioned(self, key: str) -> tuple[str, str] | None:
        text = self.read_text(key)
        return None if text is None else (text, _content_etag(text))

    def write_if_absent(self, key: str, text: str) -> str:
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            _create_exclusive(Path(tmp), target, text)
        except FileExistsError:
            raise PreconditionFailed(f"{target} already exists") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return _content_etag(text)

    def write_if_match(self, key: str, text: str, etag: str) -> str:
        import fcntl

        target = self.local_path(key)
        with open(target.with_name(f".{target.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # compare and swap as one step among writers of this key
            current = self.read_versioned(key)
            if current is None or current[1] != etag:
                raise PreconditionFailed(f"{target} {'vanished' if current is None else 'changed'}")
            atomic_write_text(target, text)
        return _content_etag(text)

    def upload_file(self, local: Path, key: str) -> None:
        target = self.local_path(key)
        if Path(local).resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)

    def download_file(self, key: str, local: Path) -> None:
        source = self.local_path(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != Path(local).resolve():
            shutil.copyfile(source, local)

    def list_keys(self, prefix: str) -> list[str]:
        base = self.local_path(prefix)
        if base.is_file():
            return [prefix.strip("/")]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> None:
        path = self.local_path(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def delete_key(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)


class S3Bucket(Bucket):
    def __init__(self, uri: str) -> None:
        rest = uri[len("s3://"):]
        self.bucket_name, _, self.prefix = rest.partition("/")
        self.prefix = self.prefix.strip("/")
        if len(self.bucket_name) < 3:
            raise CFTError(f"{uri}: not a valid S3 bucket URI (s3://<bucket>/<prefix>)")
        if not re.fullmatch(r"[A-Za-z0-9.\-_]{3,255}", self.bucket_name):  # botocore's own rule, checked up front
            raise CFTError(f"{uri}: {self.bucket_name!r} is not a valid S3 bucket name (letters, digits, '.', '-', "
                           "'_'; usually lowercase)")
        self.uri = f"s3://{self.bucket_name}" + (f"/{self.prefix}" if self.prefix else "")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = s3_client()
            except StorageError:
                raise CFTError(f"{self.uri}: S3 needs boto3: pip install boto3 (part of the `train` extra)") from None
        return self._client

    def _key(self, key: str) -> str:
        return "/".join(part for part in (self.prefix, key.strip("/")) if part)

    def _fail(self, action: str, key: str, error: Exception) -> CFTError:
        return CFTError(f"{action} s3://{self.bucket_name}/{self._key(key)} failed after retries: "
                        f"{type(error).__name__}: {error}")

    def read_text(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket_name, Key=self._key(key))
            return response["Body"].read().decode("utf-8")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("reading", key, error) from None
        except Exception as error:  # endpoint down, timeouts: botocore has many types
            raise self._fail("reading", key, error) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket_name, Key=self._key(key))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail("reading", key, error) from None
        except Exception as error:  # endpoint down, timeouts: botocore has many types
            raise self._fail("reading", key, error) from None

    def write_text(self, key: str, text: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket_name, Key=self._key(key), Body=text.encode("utf-8"))
        except Exception as error:
            raise self._fail("writing", key, error) from None

    def read_versioned(self, key: str) -> tuple[str, str] | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket_name, Key=self._key(key))
            return response["Body"].read().decode("utf-8"), response["ETag"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("reading", key, error) from None
        except Exception as error:
            raise self._fail("reading", key, error) from None

    def _put_if(self, key: str, text: str, **condition: str) -> str:
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(Bucket=self.bucket_name, Key=self._key(key), Body=text.encode("utf-8"),
                                              **condition)
            return response["ETag"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            # 412: the condition failed; 409: a concurrent conditional write won; 404: If-Match on a missing key
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"):
                raise PreconditionFailed(f"s3://{self.bucket_name}/{self._key(key)}: {code}") from None
            raise self._fail("writing", key, error) from None
        except Exception as error:
            raise self._fail("writing", key, error) from None

    def write_if_absent(self, key: str, text: str) -> str:
        return self._put_if(key, text, IfNoneMatch="*")

    def write_if_match(self, key: str, text: str, etag: str) -> str:
        return self._put_if(key, text, IfMatch=etag)

    def upload_file(self, local: Path, key: str) -> None:
        try:
            self.client.upload_file(str(local), self.bucket_name, self._key(key))
        except Exception as error:
            raise self._fail("uploading to", key, error) from None

    def download_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        try:
            self.client.download_file(self.bucket_name, self._key(key), str(tmp))
        except Exception as error:
            tmp.unlink(missing_ok=True)
            raise self._fail("downloading", key, error) from None
        os.replace(tmp, local)

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        if prefix.endswith("/") and full:
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=full):
                keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        except Exception as error:
            raise self._fail("listing", prefix, error) from None
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list_keys(prefix.rstrip("/") + "/")
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self._key(key)} for key in keys[start:start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket_name, Delete={"Objects": objects})
            except Exception as error:
                raise self._fail("deleting", prefix, error) from None

    def delete_key(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket_name, Key=self._key(key))
        except Exception as error:
            raise self._fail("deleting", key, error) from None


def open_bucket(uri: str | Path) -> Bucket:
    text = str(uri)
    if text.startswith("s3://"):
        return S3Bucket(text)
    if "://" in text:
        raise CFTError(f"{text}: unsupported bucket; use a local folder or s3://<bucket>/<prefix>")
    return LocalBucket(text)


def split_uri(uri: str) -> tuple[Bucket, str]:
    """An s3:// URI of a folder -> (bucket at its root, key of the folder)."""
    rest = uri[len("s3://"):]
    bucket_name, _, key = rest.partition("/")
    return S3Bucket(f"s3://{bucket_name}"), key.strip("/")


def materialize(uri: str | Path) -> Path:
    """A local folder holding what `uri` names: the folder itself, or a cached download of an s3:// prefix."""
    text = str(uri)
    if not text.startswith("s3://"):
        path = Path(text).expanduser()
        if not path.exists():
            raise CFTError(f"{text}: not found")
        return path
    bucket, key = split_uri(text.rstrip("/"))
    target = CACHE_DIR / "downloads" / hashlib.sha256(text.encode()).hexdigest()[:16]
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=CACHE_DIR)) if CACHE_DIR.exists() else None
    if staging is None:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=CACHE_DIR))
    try:
        bucket.download_dir(key, staging)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _create_exclusive(tmp: Path, target: Path, text: str) -> None:
    """Creates `target` only if it does not exist (FileExistsError otherwise), whole or not at all."""
    try:
        os.link(tmp, target)  # atomic and exclusive: readers never see half a file
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: exclusive create, then write
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w", encoding="utf-8") as out:
            out.write(text)


def _content_etag(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Writes under a temporary name in the same folder, then renames: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
