import json
import os
import socket
import subprocess
import sys

from tasks.caching import ReclaimingLockManager


def _write_lock(directory, key, pid):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.lock"
    path.write_text(json.dumps({"holder": "5f0c-uuid", "expiration": None, "host": socket.gethostname(), "pid": pid}))
    return path


def test_lock_of_a_killed_process_is_reclaimed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = _write_lock(tmp_path, "abc", gone.pid)
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert not manager.is_locked("abc")
    assert not path.exists()
    assert manager.acquire_lock("abc", holder="me") and manager.is_lock_holder("abc", "me")


def test_lock_of_a_live_process_is_kept(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = _write_lock(tmp_path, "abc", alive.pid)
        manager = ReclaimingLockManager(lock_files_directory=tmp_path)
        assert manager.is_locked("abc") and path.exists()
        assert not manager.acquire_lock("abc", holder="me", acquire_timeout=0.3)
    finally:
        alive.kill()


def test_acquired_locks_name_their_process(tmp_path):
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="me")
    info = json.loads((tmp_path / "k.lock").read_text())
    assert info["holder"] == "me" and info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert manager.is_locked("k") and manager.is_lock_holder("k", "me")
    manager.release_lock("k", holder="me")
    assert not manager.is_locked("k")
