"""What the builders of our own data (generated `shapes`, a user's folder) say while they build.

TFDS says it of a download: "Downloading and preparing dataset Unknown size (download: Unknown
size, generated: Unknown size, ...)", and warns "Using custom data configuration: ..." for every
builder it is handed a config, as ours always are. `LocalBuilder` says what happens instead.
"""

from __future__ import annotations

import logging


class _OwnConfigNotice(logging.Filter):
    """Drops TFDS's warning about a custom config when the config is one of this package's."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        ours = bool(args) and type(args[0]).__module__.startswith("multitask.")
        return not (ours and str(record.msg).startswith("Using custom data configuration"))


class LocalBuilder:
    """A mixin before `tfds.core.GeneratorBasedBuilder`: one line when the records are built,
    one when they are ready, in place of TFDS's download lines."""

    name: str
    data_dir: str

    def source(self) -> str:
        """What the records are built from, in a few words."""
        raise NotImplementedError

    def _log_download_bytes(self) -> None:
        print(f"building the {self.name} records from {self.source()} into {self.data_dir}", flush=True)

    def _log_download_done(self) -> None:
        print(f"{self.name} records ready in {self.data_dir}", flush=True)


logging.getLogger("absl").addFilter(_OwnConfigNotice())
