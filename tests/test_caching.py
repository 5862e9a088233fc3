import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

from multitask import processes
from tasks import caching
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


def _contend(locks, go, log, rounds):
    """Take and release the key "k" `rounds` times once `go` exists, logging entry and exit."""
    manager = ReclaimingLockManager(lock_files_directory=locks)
    while not go.exists():
        time.sleep(0.01)
    for _ in range(rounds):
        holder = uuid.uuid4().hex
        assert manager.acquire_lock("k", holder, acquire_timeout=60)
        for word in ("in", "out"):
            with log.open("a") as f:
                f.write(f"{word} {holder}\n")
        manager.release_lock("k", holder)


def test_processes_contending_for_one_key_take_turns_without_errors(tmp_path):
    """Runs started at once ask for the same key: each takes the lock in turn, and none fails on
    a lock file another is writing (Prefect's own manager fails here on empty JSON)."""
    go, log, processes, rounds = tmp_path / "go", tmp_path / "log", 8, 100
    fork = multiprocessing.get_context("fork")  # cheap: the children only take file locks
    procs = [fork.Process(target=_contend, args=(tmp_path / "locks", go, log, rounds)) for _ in range(processes)]
    for p in procs:
        p.start()
    go.touch()
    for p in procs:
        p.join(timeout=120)
        p.kill()
    assert [p.exitcode for p in procs] == [0] * processes
    lines = log.read_text().split()
    turns = list(zip(lines[0::4], lines[1::4], lines[2::4], lines[3::4], strict=True))
    assert len(turns) == processes * rounds
    assert all(a == "in" and b == "out" and h1 == h2 for a, h1, b, h2 in turns), "two holders at once"


def test_a_lock_file_left_empty_neither_fails_nor_blocks(tmp_path):
    """Prefect's manager creates a lock file empty, then fills it: a writer killed in between
    leaves it so."""
    (tmp_path / "k.lock").touch()
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert not manager.is_locked("k")
    assert manager.acquire_lock("k", holder="me", acquire_timeout=1) and manager.is_lock_holder("k", "me")


def test_a_lock_taken_with_a_hold_timeout_expires(tmp_path):
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="me", hold_timeout=0.3)
    assert manager.is_locked("k") and not manager.acquire_lock("k", holder="you", acquire_timeout=0.05)
    assert manager.acquire_lock("k", holder="you", acquire_timeout=2) and manager.is_lock_holder("k", "you")


def test_a_lock_whose_pid_now_names_another_process_is_reclaimed(tmp_path):
    """A container restarts PIDs at 1: the recorded PID is alive again, as another process (here
    this one, which started at another time than the lock says)."""
    path = _write_lock(tmp_path, "abc", os.getpid())
    path.write_text(json.dumps({**json.loads(path.read_text()), "started": 1}))
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("abc", holder="me", acquire_timeout=3) and manager.is_lock_holder("abc", "me")


def test_a_lock_recorded_before_the_last_boot_is_reclaimed(tmp_path):
    path = _write_lock(tmp_path, "abc", os.getpid())
    path.write_text(json.dumps({**json.loads(path.read_text()), **processes.identity(), "boot": "an earlier boot"}))
    manager = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("abc", holder="me", acquire_timeout=3)


def test_of_waiters_that_see_a_dead_holder_exactly_one_proceeds(tmp_path, monkeypatch):
    """Each waiter judges the holder dead, then (slowly) reclaims: without an atomic reclaim the
    later ones removed the lock the first had just taken, and several held it at once."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_lock(tmp_path, "k", gone.pid)
    judged = processes.is_running

    def slow_judge(recorded):
        found = judged(recorded)
        time.sleep(0.3)  # every waiter reads the dead holder before any removes it
        return found

    monkeypatch.setattr(caching.processes, "is_running", slow_judge)
    results: list[bool] = []

    def wait(i):
        manager = ReclaimingLockManager(lock_files_directory=tmp_path)
        results.append(manager.acquire_lock("k", f"w{i}", acquire_timeout=3))

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_a_waiter_says_who_holds_the_lock(tmp_path, caplog, monkeypatch):
    holder = ReclaimingLockManager(lock_files_directory=tmp_path)
    assert holder.acquire_lock("k", holder="first")
    waiter = ReclaimingLockManager(lock_files_directory=tmp_path)
    monkeypatch.setattr(waiter, "LOG_EVERY_S", 0.2)
    with caplog.at_level(logging.WARNING, logger="tasks.caching"):
        assert not waiter.acquire_lock("k", holder="second", acquire_timeout=0.7)
    said = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert said and f"held by first (process {os.getpid()} on {socket.gethostname()})" in said[0]
