"""The three Python services (the Prefect server, the MLflow server, a process worker): their
command lines, starting and stopping them by PID file, and asking whether they answer."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stack_files import _open_log, _write_private
from stack_output import StackError, _say
from stack_signals import _children, _end
from stack_state import HOST, USER, StackDir

from multitask import processes

ROOT = Path(__file__).resolve().parents[2]  # flow runs start here (prefect.yaml's pull step)
SERVICES = ("prefect", "mlflow", "worker")  # started in this order, stopped in reverse
POOL = "multitask"
START_TIMEOUT_S = float(os.environ.get("MULTITASK_STACK_TIMEOUT", "180"))


class Services(StackDir):
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
        """The pid of the service `up` started, if that very process still runs; else None. A PID
        file whose process is known to be gone is removed; one that cannot be judged (a bare PID,
        or an identity from another host name) is kept, and said so."""
        path = self.run / f"{service}.pid"
        try:
            recorded = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            recorded = None
        running = processes.is_running(recorded) if isinstance(recorded, dict) else None
        if running:
            return recorded["pid"]
        if running is False:
            path.unlink(missing_ok=True)
        elif not isinstance(recorded, dict):
            _say(f"{path} names no process identity ({recorded!r}; a bare PID proves nothing after an exit or a "
                 "reboot): nothing signalled and the file kept; stop that service by hand if it still runs")
        else:
            _say(f"{path} was written on host {recorded.get('host')!r}, not this one: nothing signalled and "
                 "the file kept")
        return None

    def stop_own(self, service: str) -> bool:
        """Stop the process this call of `up` started for `service` (its PID file may not be
        written yet: the Popen object says which process it is)."""
        proc = self.started.get(service)
        if proc is None or proc.poll() is not None:
            return False
        _end([proc.pid, *(_children(proc.pid) if service == "worker" else [])], reap=self._reap)
        (self.run / f"{service}.pid").unlink(missing_ok=True)
        return True

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
