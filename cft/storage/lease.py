"""One writer per run: a lease object in the run's prefix, taken with a conditional write, kept by a heartbeat.

    <bucket>/runs/<run_id>/lease.json   {"token", "host", "pid", "since", "renewed_at", "ttl_s", "released"}

Taking it: create it only if absent (S3 `If-None-Match: *`; a local folder: exclusive create). When one exists:

- released by its holder, or expired (no renewal for `ttl_s`): replace it, conditional on the version read
  (`If-Match`), so of two starters only one wins;
- its holder is alive (same host: the pid runs; another host: its heartbeat moves while we watch): stop with one
  line naming the holder (host, pid, since when) -> `cft train` exits 2;
- its holder is dead (same host: the pid is gone -> take it now; another host: the heartbeat stopped): wait for
  the lease to expire, saying how long, then take it. A recovered managed job lands here.

The holder renews every `heartbeat_s`, again conditional on its own last version. If that condition fails, another
writer has taken over (this process stalled past `ttl_s`): `check()` then raises LeaseLost and the run stops
before its next write. Defaults: ttl 180 s, heartbeat 30 s (`CFT_LEASE_TTL_S`, `CFT_LEASE_HEARTBEAT_S`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cft.errors import CFTError
from cft.storage.bucket import Bucket, PreconditionFailed

logger = logging.getLogger("cft")

LEASE_FILE = "lease.json"


class LeaseHeld(CFTError):
    """Another live process writes this run."""


class LeaseLost(CFTError):
    """This process no longer holds the run's lease: another writer took over, so it must not write."""


def _now() -> float:
    return time.time()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class Holder:
    """What a lease says about its holder."""

    token: str
    host: str
    pid: int
    pid_ns: str
    since: float
    renewed_at: float
    ttl_s: float
    released: bool = False

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["token"]), str(data["host"]), int(data["pid"]), str(data.get("pid_ns", "")),
                       float(data["since"]), float(data["renewed_at"]), float(data["ttl_s"]),
                       bool(data.get("released", False)))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treated as expired, so a garbled lease cannot block a run for ever

    def to_text(self) -> str:
        return json.dumps({"token": self.token, "host": self.host, "pid": self.pid, "pid_ns": self.pid_ns,
                           "since": self.since, "since_iso": _iso(self.since), "renewed_at": self.renewed_at,
                           "renewed_at_iso": _iso(self.renewed_at), "ttl_s": self.ttl_s,
                           "released": self.released}, indent=2) + "\n"

    def describe(self) -> str:
        return f"host {self.host} pid {self.pid} since {_iso(self.since)}"

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname() and self.pid_ns == _pid_namespace()


class RunLease:
    """The lease of one run; `acquire()`, then `check()` before writes, then `release()`."""

    def __init__(self, bucket: Bucket, run_prefix: str, ttl_s: float | None = None,
                 heartbeat_s: float | None = None) -> None:
        self.bucket = bucket
        self.key = f"{run_prefix}/{LEASE_FILE}"
        self.run_id = run_prefix.rsplit("/", 1)[-1]
        self.ttl_s = float(ttl_s or os.environ.get("CFT_LEASE_TTL_S", 180))
        self.heartbeat_s = float(heartbeat_s or os.environ.get("CFT_LEASE_HEARTBEAT_S", 30))
        self.me = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), _pid_namespace(), 0.0, 0.0,
                         self.ttl_s)
        self._etag: str | None = None
        self._lost: str | None = None
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- taking the lease -------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Takes the lease, waiting for a dead holder's lease to expire; LeaseHeld when a live process holds it."""
        while True:
            self.me.since = self.me.renewed_at = _now()
            try:
                self._etag = self.bucket.write_if_absent(self.key, self.me.to_text())
                break
            except PreconditionFailed:
                pass
            if self._take_over_existing():
                break
        self._renewed = time.monotonic()
        self._warn_if_conditions_ignored()
        self._thread = threading.Thread(target=self._heartbeat, name=f"cft-lease-{self.run_id}", daemon=True)
        self._thread.start()

    def _take_over_existing(self) -> bool:
        """One look at the existing lease: True when it is now ours, False to try again from the start."""
        current = self.bucket.read_versioned(self.key)
        if current is None:
            return False  # released and deleted meanwhile: create it
        text, etag = current
        holder = Holder.parse(text)
        if holder is not None and not holder.released:
            etag = self._wait_until_free(holder, etag)
            if etag is None:
                return False  # it changed while we waited (renewed by a new holder, released): look again
        self.me.since = self.me.renewed_at = _now()
        try:
            self._etag = self.bucket.write_if_match(self.key, self.me.to_text(), etag)
            return True
        except PreconditionFailed:
            return False  # another starter took it first: look again (it will be alive, so we stop)

    def _wait_until_free(self, holder: Holder, etag: str) -> str | None:
        """The etag to replace once `holder` is known dead and its lease expired; LeaseHeld if it is alive."""
        if holder.on_this_host():
            if _pid_alive(holder.pid):
                raise self._held(holder)
            self._say(f"the lease holder ({holder.describe()}) is no longer running on this host; taking over")
            return etag
        # Another host: alive if its heartbeat moves while we watch, for up to two heartbeats since the last one.
        watch_until = holder.renewed_at + 2 * self.heartbeat_s
        while _now() < watch_until:
            time.sleep(min(max(watch_until - _now(), 0.05), self.heartbeat_s / 4))
            current = self.bucket.read_versioned(self.key)
            if current is None or current[1] != etag:
                renewed = Holder.parse(current[0]) if current else None
                if renewed is not None and renewed.token == holder.token and not renewed.released:
                    raise self._held(renewed)
                return None
        expires = holder.renewed_at + holder.ttl_s
        if expires > _now():
            self._say(f"the lease of {holder.describe()} has had no heartbeat for "
                      f"{_now() - holder.renewed_at:.0f}s, so its holder looks dead; waiting {expires - _now():.0f}s "
                      f"for it to expire ({self.bucket.join(self.key)})")
            time.sleep(max(expires - _now(), 0))
            current = self.bucket.read_versioned(self.key)
            if current is None or current[1] != etag:
                return None
        return etag

    def _held(self, holder: Holder) -> LeaseHeld:
        age = max(_now() - holder.renewed_at, 0)
        return LeaseHeld(f"run {self.run_id} is being written by {holder.describe()} (lease renewed {age:.0f}s ago: "
                         f"{self.bucket.join(self.key)}); stop that process or use another --run-id")

    def _warn_if_conditions_ignored(self) -> None:
        """A store that ignores If-Match accepts a write against a made-up version; then say what that means."""
        try:
            self.bucket.write_if_match(self.key, self.me.to_text(), '"00000000000000000000000000000000"')
        except PreconditionFailed:
            return
        except CFTError as error:
            logger.warning("could not check whether %s honours conditional writes: %s", self.bucket.uri, error)
            return
        logger.warning("%s ignores conditional writes (If-Match): the run lease cannot stop a second writer that "
                       "starts within seconds of this one", self.bucket.uri)

    # --- keeping it ----------------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._renew()

    def _renew(self) -> None:
        with self._lock:
            if self._lost or self._etag is None:
                return
            self.me.renewed_at = _now()
            try:
                self._etag = self.bucket.write_if_match(self.key, self.me.to_text(), self._etag)
                self._renewed = time.monotonic()
            except PreconditionFailed:
                current = self.bucket.read_versioned(self.key)
                holder = Holder.parse(current[0]) if current else None
                self._lost = f"taken over by {holder.describe()}" if holder else "deleted by someone else"
                logger.error("run %s: lease %s; this process stops writing", self.run_id, self._lost)
            except CFTError as error:  # the store is unreachable: keep trying until the lease would expire
                if time.monotonic() - self._renewed > self.ttl_s:
                    self._lost = f"not renewed for {self.ttl_s:.0f}s ({error})"
                logger.warning("run %s: could not renew the lease: %s", self.run_id, error)

    def check(self) -> None:
        """Raises LeaseLost when another writer has taken the run over; call before every write."""
        if self._lost:
            raise LeaseLost(f"run {self.run_id}: lease {self._lost}; stopped without writing more")

    @property
    def held(self) -> bool:
        return self._etag is not None and not self._lost

    def release(self) -> None:
        """Marks the lease released (conditional on still holding it), so the next start need not wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if not self.held:
                return
            self.me.released = True
            try:
                self.bucket.write_if_match(self.key, self.me.to_text(), self._etag)  # type: ignore[arg-type]
            except (PreconditionFailed, CFTError) as error:
                logger.warning("run %s: could not release the lease: %s", self.run_id, error)
            self._etag = None

    def _say(self, message: str) -> None:
        text = f"run {self.run_id}: {message}"
        logger.warning(text)
        print(f"cft: {text}", file=sys.stderr, flush=True)

    def __enter__(self) -> RunLease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
