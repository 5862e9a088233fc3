"""Whether a TFDS dataset's downloads can be reached from here, found out in seconds.

Offline, TFDS tries each of its download URLs six times, and each try waits for the name lookup
to fail: minutes before one error. `unreachable_hosts` asks the builder which URLs it would fetch
first (its `_split_generators`, with a download manager that only writes them down) and tries to
connect to each host, all at once, for `TIMEOUT_S`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import tensorflow_datasets as tfds

TIMEOUT_S = 10.0


class _Listed(BaseException):
    """Raised by `_Lister` once it has the URLs of the first download (a BaseException, so that a
    builder's own `except Exception` does not swallow it)."""


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


def _connects(target: tuple[str, int], answers: dict[tuple[str, int], bool]) -> None:
    try:
        socket.create_connection(target, timeout=TIMEOUT_S).close()
        answers[target] = True
    except OSError:
        answers[target] = False


def _targets(urls: list[str]) -> set[tuple[str, int]]:
    """(host, port) of each http(s) URL; a URL whose port does not parse is left to TFDS."""
    targets = set()
    for parts in map(urlsplit, urls):
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if parts.hostname and parts.scheme in ("http", "https"):
            targets.add((parts.hostname, port))
    return targets


def through_proxy() -> bool:
    """Whether downloads go through a proxy (then a direct connection proves nothing)."""
    return any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                                 "ALL_PROXY", "all_proxy"))


def unreachable_hosts(urls: list[str]) -> list[str]:
    """The hosts of `urls` that did not accept a connection within `TIMEOUT_S` (name lookup
    included), all tried at once; none when a proxy is configured."""
    targets = set() if through_proxy() else _targets(urls)
    answers: dict[tuple[str, int], bool] = {}
    threads = [threading.Thread(target=_connects, args=(target, answers), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sorted({host for host, port in targets if not answers.get((host, port), False)})
