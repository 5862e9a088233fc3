import json
import socket
import subprocess
import sys

from tasks.caching import ReclaimingLockManager


def _write_lock(directory, key, pid):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.lock"
    path.write_text(json.dumps({"holder": f"{socket.gethostname()}:{pid}:1:MainThread", "expiration": None}))
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
