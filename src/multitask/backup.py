"""The crash backup of a training run, never half-written.

Keras' `BackupAndRestore` writes its weights file in place after every epoch: a process killed
while it writes leaves a file no retry can open (`OSError: ... bad object header`), so the run
could neither resume nor start again. Here the weights and the epoch count are each written beside
their final name and renamed into place, weights first. A kill before the first rename leaves the
previous epoch's backup whole; a kill between the two renames leaves the weights one epoch ahead
of the count, and the retry trains that epoch once more rather than skipping one.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from multitask import atomic
from multitask.errors import UserError


class Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (after every epoch, removed once training ends) with atomic writes."""

    def __init__(self, backup_dir: Path):
        super().__init__(str(backup_dir))
        self.folder = backup_dir

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError as exc:  # written by something other than this class, or damaged on the disk
            raise UserError(f"the training backup in {self.folder} cannot be read ({exc}); delete the run "
                            f"folder {self.folder.parent} to train this run from its first epoch") from exc

    def _save_model(self):
        atomic.write_with(Path(self._weights_path), lambda tmp: self.model.save_weights(str(tmp), overwrite=True))
        atomic.write_bytes(Path(self._training_metadata_path),
                           json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}).encode())
