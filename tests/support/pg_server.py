"""A real PostgreSQL server for the tests: a throw-away cluster on 127.0.0.1 and a free port.

The server binaries come from ``$PERSONALIZER_PG_BIN``, else the newest
``/usr/lib/postgresql/*/bin`` (Debian's layout), else ``pg_ctl`` on the PATH. PostgreSQL
refuses to run as root, so as root the cluster belongs to the ``postgres`` system user and its
commands run through ``runuser``. Password authentication (scram) is on, so the tests see the
same login path an application does. Durability is off (``fsync=off``): the tests check
transactions and crashes of clients, not of the machine.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

INSTALL_HINT = ("PostgreSQL server binaries not found: install the server (Debian/Ubuntu: "
                "apt-get install postgresql) or set PERSONALIZER_PG_BIN to the folder holding "
                "initdb and pg_ctl")


def find_bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or None."""
    env = os.environ.get("PERSONALIZER_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                         else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster: ``start()``, ``stop()``, ``url(dbname)``, ``create_database()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="personalizer-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        os.chmod(self.root, 0o700)
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync")
        pwfile.unlink()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running(bindir: Path) -> Iterator[PostgresServer]:
    """A new cluster, started; stopped and removed afterwards (even if stopped already)."""
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        except RuntimeError:
            pass  # the test stopped it
        server.remove()


def user_rows(url: str, user_id: str) -> dict[str, int]:
    """Rows of ``user_id`` in every table with a user_id column, read with plain psycopg."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'user_id'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}" WHERE user_id = %s',
                                (user_id,)).fetchone()[0] for t in tables}


def rows_mentioning(url: str, text: str) -> dict[str, int]:
    """Rows of every table in the database whose text form contains ``text`` anywhere."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}" AS r WHERE r::text LIKE %s',
                                (f"%{text}%",)).fetchone()[0] for t in tables}
