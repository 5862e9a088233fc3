"""Whether a TFDS dataset's downloads can be reached from here, found out in seconds.

Offline, TFDS tries each of its download URLs six times, and each try waits for the name lookup
to fail: minutes before one error. `unreachable_hosts` asks the builder which URLs it would fetch
first (its `_split_generators`, with a download manager that only writes them down) and tries to
connect to each host, all at once, for `TIMEOUT_S`.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import tensorflow_datasets as tfds

TIMEOUT_S = 10.0


class _Listed(Exception):
    """Raised by `_Lister` once it has the URLs of the first download."""


class _Lister(tfds.download.DownloadManager):
    """Writes down the URLs of the first download request instead of fetching them."""

    def __init__(self) -> None:  # no download folder: nothing is ever fetched
        self.urls: list[str] = []

    def download(self, url_or_urls: Any) -> Any:
        self.urls += _urls(url_or_urls)
        raise _Listed

    download_and_extract = download


def _urls(resources: Any) -> list[str]:
    if isinstance(resources, dict):
        return [url for value in resources.values() for url in _urls(value)]
    if isinstance(resources, list | tuple):
        return [url for value in resources for url in _urls(value)]
    url = getattr(resources, "url", resources)
    return [url] if isinstance(url, str) else []


def first_urls(builder: tfds.core.GeneratorBasedBuilder) -> list[str]:
    """The URLs the builder downloads first; [] when it downloads nothing or this cannot tell."""
    lister = _Lister()
    try:
        builder._split_generators(lister)  # noqa: SLF001  (the one way to learn its URLs)
    except _Listed:
        return lister.urls
    except Exception:  # manual downloads, Kaggle, or a builder that needs more than URLs
        return []
    return lister.urls


def _connects(host: str, port: int, answers: dict[str, bool]) -> None:
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
        answers[host] = True
    except OSError:
        answers[host] = False


def unreachable_hosts(urls: list[str]) -> list[str]:
    """The hosts of `urls` that did not accept a connection within `TIMEOUT_S` (name lookup included)."""
    targets = {(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
               for parts in map(urlsplit, urls) if parts.hostname and parts.scheme in ("http", "https")}
    answers: dict[str, bool] = {}
    threads = [threading.Thread(target=_connects, args=(host, port, answers), daemon=True) for host, port in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sorted(host for host, _ in targets if not answers.get(host, False))
