"""The stack's state under DIR: its folders, its secrets and ports, and the URLs and credentials
that a client of the stack needs."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from pathlib import Path

from stack_files import _write_private

HOST = "127.0.0.1"
USER = "multitask"  # PostgreSQL role, Prefect's basic-auth user and MLflow's admin


class StackDir:
    def __init__(self, root: Path):
        self.dir = root.resolve()
        self.secrets = self.dir / "secrets"
        self.logs = self.dir / "logs"
        self.run = self.dir / "run"
        self.pgdata = self.dir / "postgres" / "data"
        self.started: dict[str, subprocess.Popen] = {}  # by this `up`, so that an exit is seen at once
        self.started_postgres = False  # by this `up`

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
            "MULTITASK_TUNE_STORAGE": self.db_url("optuna", "postgresql+psycopg2"),  # studies shared by workers
        }

    def export_lines(self) -> list[str]:
        """`export` lines for `eval`; secrets are read from their files, so they are never printed."""
        files = {"PREFECT_API_AUTH_STRING": "prefect_token", "MLFLOW_TRACKING_PASSWORD": "mlflow_password",
                 "MULTITASK_TUNE_STORAGE": "pg_password"}
        lines = []
        for name, value in self.client_env().items():
            if name in files:
                value = value.replace(self.secret(files[name]), f"$(cat '{self.secrets / files[name]}')")
            lines.append(f'export {name}="{value}"')
        return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
