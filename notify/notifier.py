"""Every place a notification should go, from the environment: ntfy (``NTFY_*``) and Apprise (``APPRISE_URLS``).

ntfy stays the default and needs nothing but ``requests``; Apprise loads only when ``APPRISE_URLS`` is set.
With neither set, the ntfy client says once that notifications are disabled.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TextIO

from notify.apprise_client import AppriseClient, urls_from_env
from notify.client import NtfyClient, deadline_from


class Channel(Protocol):
    def publish(self, message: str, title: str | None = None, priority: int | str | None = None,
                tags: Iterable[str] | str | None = None, click: str | None = None,
                markdown: bool = True) -> bool: ...


@dataclass
class Notifier:
    """Sends each notification to every configured channel."""

    channels: list[Channel]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, stderr: TextIO | None = None) -> Notifier:
        urls = urls_from_env(env)
        channels: list[Channel] = []
        if env.get("NTFY_TOPIC", "").strip() or not urls:
            channels.append(NtfyClient.from_env(env, stderr=stderr))
        deadline = deadline_from(env)
        channels += [AppriseClient(url, deadline, env=env, stderr=stderr) for url in urls]
        return cls(channels)

    def publish(
        self,
        message: str,
        title: str | None = None,
        priority: int | str | None = None,
        tags: Iterable[str] | str | None = None,
        click: str | None = None,
        markdown: bool = True,
    ) -> bool:
        """True when every channel delivered (never raises); False also when none is configured.

        Channels send side by side, so the whole takes one deadline, not one per channel.
        """
        results: list[bool] = []

        def send(channel: Channel) -> None:
            results.append(channel.publish(message, title=title, priority=priority, tags=tags, click=click,
                                           markdown=markdown))

        if len(self.channels) == 1:
            send(self.channels[0])
            return bool(results[0])
        workers = [threading.Thread(target=send, args=(c,), daemon=True) for c in self.channels]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()  # each channel returns within its own deadline
        return len(results) == len(self.channels) and all(results)


def notify(
    message: str,
    title: str | None = None,
    priority: int | str | None = None,
    tags: Iterable[str] | str | None = None,
    click: str | None = None,
    markdown: bool = True,
    env: Mapping[str, str] = os.environ,
) -> bool:
    """Publish one notification configured from ``env`` (``NTFY_*``, ``APPRISE_URLS``); never raises, returns
    whether every channel delivered it."""
    return Notifier.from_env(env).publish(message, title=title, priority=priority, tags=tags, click=click,
                                          markdown=markdown)
