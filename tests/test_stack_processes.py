"""The team stack's process handling (deployments/stack/stack.py), without starting its servers:
PID files that name a process by its identity, an `up` that fails or is interrupted, and what
root writes into folders another user owns. tests/test_stack.py starts the real stack."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import threading
import time

import pytest

from multitask import processes

from helpers import stack_module

stack = stack_module()


class Sleeper:
    """A process in a session of its own, as `up` starts each service, reaped by a thread the
    moment it ends (a zombie would still take signals; `down` is never the parent of a service)."""

    def __init__(self):
        self.proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        self.pid = self.proc.pid
        self._waiter = threading.Thread(target=self.proc.wait, daemon=True)
        self._waiter.start()

    def running(self) -> bool:
        return self._waiter.is_alive()

    def ended_by(self) -> int:
        self._waiter.join(timeout=5)
        return self.proc.returncode


def _record(st, service: str, proc: Sleeper, **changed) -> None:
    st.run.mkdir(parents=True, exist_ok=True)
    (st.run / f"{service}.pid").write_text(json.dumps({**processes.identity(proc.pid), **changed}))


@pytest.fixture
def sleepers():
    started: list[Sleeper] = []
    yield lambda: started.append(Sleeper()) or started[-1]
    for sleeper in started:
        if sleeper.running():
            os.killpg(sleeper.pid, signal.SIGKILL)


@pytest.mark.parametrize("changed", [
    {"started": -1},  # the PID now names a process started at another time
    {"boot": "an-earlier-boot"},  # recorded before a reboot
])
def test_down_leaves_alone_a_process_that_took_over_a_recorded_pid(tmp_path, sleepers, capsys, changed):
    st = stack.Stack(tmp_path)
    unrelated = sleepers()
    _record(st, "worker", unrelated, **changed)
    stack.down(st)
    time.sleep(0.3)
    assert unrelated.running(), "down signalled a process the stack did not start"
    assert not (st.run / "worker.pid").exists()
    assert "nothing was running" in capsys.readouterr().err


def test_down_leaves_alone_a_bare_pid_and_says_so(tmp_path, sleepers, capsys):
    st = stack.Stack(tmp_path)
    unrelated = sleepers()
    st.run.mkdir(parents=True)
    (st.run / "mlflow.pid").write_text(str(unrelated.pid))
    stack.down(st)
    time.sleep(0.3)
    assert unrelated.running()
    said = capsys.readouterr().err
    assert "names no process identity" in said and str(unrelated.pid) in said  # the PID, to stop it by hand
    assert (st.run / "mlflow.pid").read_text() == str(unrelated.pid)  # the only record of it is kept


def test_down_keeps_a_pid_file_written_on_another_host(tmp_path, sleepers, capsys):
    st = stack.Stack(tmp_path)
    elsewhere = sleepers()
    _record(st, "prefect", elsewhere, host="another-host")
    stack.down(st)
    time.sleep(0.3)
    assert elsewhere.running() and (st.run / "prefect.pid").exists()
    assert "written on host 'another-host', not this one" in capsys.readouterr().err


def test_down_stops_the_very_process_up_started(tmp_path, sleepers):
    st = stack.Stack(tmp_path)
    service = sleepers()
    _record(st, "prefect", service)
    stack.down(st)
    assert service.ended_by() == -signal.SIGTERM
    assert not (st.run / "prefect.pid").exists()


@pytest.mark.parametrize("failure", [stack.StackError("mlflow did not answer"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_up_stops_only_what_it_started(tmp_path, sleepers, monkeypatch, failure):
    """A stack whose Prefect server already runs; this `up` starts MLflow and the worker, then
    fails (or is interrupted) waiting for the worker: the server it found stays up."""
    st = stack.Stack(tmp_path)
    running = sleepers()
    _record(st, "prefect", running)
    monkeypatch.setattr(stack.Stack, "start_postgres", lambda self: None)
    monkeypatch.setattr(stack.Stack, "_create_pool", lambda self: None)
    monkeypatch.setattr(stack.Stack, "command", lambda self, service: (["sleep", "300"], dict(os.environ)))
    started: dict[str, subprocess.Popen] = {}

    def wait(self, service):
        started.update(self.started)
        if service == "worker":
            raise failure

    monkeypatch.setattr(stack.Stack, "wait", wait)
    if isinstance(failure, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            stack.main(["up", str(tmp_path)])
    else:
        assert stack.main(["up", str(tmp_path)]) == 1
    assert set(started) == {"mlflow", "worker"}
    assert all(proc.wait(timeout=5) == -signal.SIGTERM for proc in started.values())
    assert running.running(), "the failed up stopped a service it had not started"
    assert st.pid("prefect") == running.pid
    assert not (st.run / "mlflow.pid").exists() and not (st.run / "worker.pid").exists()


def test_an_up_that_fails_before_writing_a_pid_file_still_stops_that_process(tmp_path, monkeypatch):
    """Failing (or killed) between starting a service and recording it: the process is still stopped."""
    import stack_services

    monkeypatch.setattr(stack.Stack, "start_postgres", lambda self: None)
    monkeypatch.setattr(stack.Stack, "command", lambda self, service: (["sleep", "300"], dict(os.environ)))
    launched: list[subprocess.Popen] = []
    real_popen, real_write = subprocess.Popen, stack_services._write_private

    def no_room_for_pid_files(path, text):
        if path.suffix == ".pid":
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(stack_services.subprocess, "Popen",
                        lambda *args, **kwargs: launched.append(real_popen(*args, **kwargs)) or launched[-1])
    monkeypatch.setattr(stack_services, "_write_private", no_room_for_pid_files)
    try:
        assert stack.main(["up", str(tmp_path)]) == 1
        [proc] = launched
        assert proc.wait(timeout=5) == -signal.SIGTERM, "the service started before the failure still runs"
    finally:
        for proc in launched:
            proc.kill()


def test_as_root_a_dir_someone_else_could_write_is_refused(tmp_path, sleepers, monkeypatch, capsys):
    """A PID file planted in a DIR another user can write would make root's `down` signal any process."""
    uid = os.getuid()
    mine = tmp_path / "mine"
    (mine / "run").mkdir(parents=True, mode=0o700)
    mine.chmod(0o711)
    assert stack.unsafe_folders(mine, uid) == [] and stack.unsafe_folders(tmp_path / "absent", uid) == []
    (mine / "run").chmod(0o777)
    assert stack.unsafe_folders(mine, uid) == [f"{mine / 'run'} is writable by others (mode 777)"]
    assert stack.unsafe_folders(mine, uid + 1)[0] == f"{mine} belongs to uid {uid}"
    (tmp_path / "link").symlink_to(mine)
    assert stack.unsafe_folders(tmp_path / "link", uid)[0] == f"{tmp_path / 'link'} is a link"

    victim = sleepers()
    st = stack.Stack(mine)
    _record(st, "worker", victim)  # planted
    monkeypatch.setattr(stack.os, "geteuid", lambda: 0)
    assert stack.main(["down", str(mine)]) == 2
    assert "error: as root, DIR must be root's own: " in capsys.readouterr().err
    time.sleep(0.3)
    assert victim.running() and (st.run / "worker.pid").exists()


def test_a_link_in_place_of_a_log_is_refused_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("someone else's file\n")
    before = target.stat()
    (tmp_path / "postgres.log").symlink_to(target)
    owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    with pytest.raises(stack.StackError, match="a link there is refused"):
        stack._open_log(tmp_path / "postgres.log", owner)
    after = target.stat()
    assert (after.st_uid, after.st_size) == (before.st_uid, before.st_size)


def test_the_password_reaches_initdb_through_a_descriptor_and_nowhere_else(tmp_path, monkeypatch):
    """initdb reads its password from a file; it gets an anonymous one, readable by the user it runs
    as (`nobody` under root), through /proc/self/fd: nothing is written into a folder."""
    owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    ids = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
    monkeypatch.chdir(tmp_path)
    with stack._password_file("s3cret-password", owner) as path:
        assert path.startswith("/proc/self/fd/")
        read = subprocess.run(["cat", path], capture_output=True, text=True, close_fds=False, check=True, **ids)
    assert read.stdout == "s3cret-password"
    assert not list(tmp_path.iterdir())


def test_private_files_are_written_whole_with_mode_600(tmp_path):
    path = tmp_path / "secrets" / "token"
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "secrets" / "token.partial").symlink_to(tmp_path / "target")  # left by someone
    stack._write_private(path, "value")
    assert path.read_text() == "value" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "target").exists() and not (tmp_path / "secrets" / "token.partial").exists()


def test_private_files_reach_the_disk_before_and_after_their_rename(tmp_path, monkeypatch):
    """After a power loss a token file holds the old value or the new, never nothing."""
    events, fsync, rename = [], os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(os.readlink(f"/proc/self/fd/{fd}")), fsync(fd))[1])
    monkeypatch.setattr(os, "rename", lambda src, dst: (events.append(("rename", str(dst))), rename(src, dst))[1])
    stack._write_private(tmp_path / "secrets" / "prefect_token", "value")
    assert events == [str(tmp_path / "secrets" / "prefect_token.partial"),
                      ("rename", str(tmp_path / "secrets" / "prefect_token")), str(tmp_path / "secrets")]
