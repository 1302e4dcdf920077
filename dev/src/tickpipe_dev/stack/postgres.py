"""A private PostgreSQL cluster for the local stack (data in ``.local/pg/data``, port 55432).

initdb, pg_ctl and the server refuse to run as root, so when the stack is driven by root (CI
containers, this dev box) they run as the ``postgres`` system user, which owns ``.local/pg``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import (
    Reporter,
    live_pid,
    pid_alive,
    port_open,
    remove_pid_file,
    wait_until,
    write_pid_file,
)

NAME = "postgres"
HOST = "127.0.0.1"
PORT = 55432
ROLE = "tickpipe"
PASSWORD = "tickpipe"
DATABASE = "tickpipe"
SUPERUSER = "postgres"
OS_USER = "postgres"
START_TIMEOUT_S = 60.0
CONF_NAME = "tickpipe.conf"


def dsn(host: str = HOST, port: int = PORT) -> str:
    """The DSN of the tickpipe database (the default of ``Settings.database_url``)."""
    return f"postgresql://{ROLE}:{PASSWORD}@{host}:{port}/{DATABASE}"


# --- binaries -------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: "15" or "9.6"; non-numeric versions sort first.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (-1,)


def find_bin_dir(base: Path = Path("/usr/lib/postgresql"), *, private: Path | None = None) -> Path:
    """The server binaries the stack runs.

    The private tree ``<private>/current/usr/lib/postgresql/<version>/bin`` (a copy of the
    system's server with TimescaleDB installed into it by ``bin/bootstrap``) wins when it
    exists; else the newest ``<base>/<version>/bin`` holding pg_ctl, else the directory of
    pg_ctl in PATH. Raises :class:`StackError` when none exists (run ``bin/bootstrap``).
    """
    for root in ((private / "current" / "usr" / "lib" / "postgresql",) if private else ()) + (
        base,
    ):
        candidates = [p.parent for p in root.glob("*/bin/pg_ctl") if os.access(p, os.X_OK)]
        if candidates:
            return max(candidates, key=_version_key)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise StackError(f"no PostgreSQL binaries (no {base}/*/bin/pg_ctl); run bin/bootstrap")


def stack_bin_dir(paths: StackPaths) -> Path:
    """:func:`find_bin_dir` for this stack: its private TimescaleDB tree first."""
    return find_bin_dir(private=paths.pg_server_dir)


def extension_available(bin_dir: Path, name: str) -> bool:
    """True when the server in ``bin_dir`` has extension ``name`` installed (its .control file)."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    result = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True,
                            check=False)  # fmt: skip
    share = Path(result.stdout.strip())
    return result.returncode == 0 and (share / "extension" / f"{name}.control").is_file()


def server_description(paths: StackPaths) -> str:
    """What the running server stores data in, e.g. ``TimescaleDB 2.28.3 on PostgreSQL 15.20``
    or ``plain PostgreSQL 15.20 (no TimescaleDB)``. Raises :class:`StackError` when the server
    cannot be asked."""
    bin_dir = stack_bin_dir(paths)
    version = _psql(paths, bin_dir, "SHOW server_version", DATABASE).split()[0]
    ext = _psql(
        paths, bin_dir, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
        DATABASE,
    )  # fmt: skip
    if ext:
        return f"TimescaleDB {ext} on PostgreSQL {version}"
    return f"plain PostgreSQL {version} (no TimescaleDB)"


# --- running as the postgres user -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunAs:
    """Who runs the server binaries: ``None`` uid means the current user (not root)."""

    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :mod:`subprocess` that switch to this user."""
        if self.uid is None:
            return {}
        # extra_groups=[] drops root's supplementary groups from the server process.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        """Give ``path`` to this user (no-op when running as ourselves)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def ensure_os_user() -> RunAs:
    """The identity for initdb/pg_ctl: ourselves, or when root the ``postgres`` user.

    Creates the ``postgres`` system user if it is missing. Raises :class:`StackError` when it
    cannot be created.
    """
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--home-dir", "/var/lib/postgresql", "--shell", "/bin/sh", OS_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"cannot create the {OS_USER} user: {result.stderr.strip()}") from None
        entry = pwd.getpwnam(OS_USER)
    return RunAs(entry.pw_uid, entry.pw_gid)


def _search_bit(path: Path, run_as: RunAs) -> int:
    # The kernel uses exactly one class: owner if the uid matches, else group, else other.
    info = path.stat()
    if run_as.uid is not None and info.st_uid == run_as.uid:
        return stat.S_IXUSR
    if run_as.gid is not None and info.st_gid == run_as.gid:
        return stat.S_IXGRP
    return stat.S_IXOTH


def check_traversable(target: Path, run_as: RunAs, fixable_under: Path) -> None:
    """Make sure ``run_as`` can reach ``target``: every ancestor must be searchable by it.

    Ancestors inside ``fixable_under`` (our ``.local``) get the missing search bit; others are
    not ours to change, so :class:`StackError` explains which one blocks and what to do.
    """
    if run_as.uid is None:
        return
    for ancestor in reversed(target.parents):
        bit = _search_bit(ancestor, run_as)
        mode = ancestor.stat().st_mode
        if mode & bit:
            continue
        if ancestor == fixable_under or fixable_under in ancestor.parents:
            ancestor.chmod(stat.S_IMODE(mode) | bit)
            continue
        raise StackError(
            f"postgres: user {OS_USER} cannot traverse {ancestor} to reach {target}; "
            f"run `chmod o+x {ancestor}` or set TICKPIPE_LOCAL_DIR to a reachable directory"
        )


# --- configuration --------------------------------------------------------------------------


def render_conf(socket_dir: Path, *, port: int = PORT, preload: tuple[str, ...] = ()) -> str:
    """The settings tickpipe adds to postgresql.conf (included from ``tickpipe.conf``)."""
    lines = [
        "# Generated by tickpipe-stack on every start; edits are overwritten.",
        f"port = {port}",
        f"listen_addresses = '{HOST}'",
        f"unix_socket_directories = '{socket_dir}'",
        "max_connections = 100",
    ]
    if preload:
        lines.append(f"shared_preload_libraries = '{','.join(preload)}'")
    return "\n".join(lines) + "\n"


# --- lifecycle ------------------------------------------------------------------------------


def _run(argv: list[str], run_as: RunAs, paths: StackPaths, what: str) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, cwd=paths.pg_dir,
        **run_as.popen_kwargs(),
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(
            f"postgres: {what} failed (exit {result.returncode}); log: {paths.log_file(NAME)}\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )
    return str(result.stdout)


def _prepare_dirs(paths: StackPaths, run_as: RunAs) -> None:
    paths.ensure_dirs()
    for directory in (paths.pg_dir, paths.pg_data, paths.pg_socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
        run_as.chown(directory)
    # initdb insists on 0700 (or 0750) for the data directory.
    paths.pg_data.chmod(0o700)
    log = paths.log_file(NAME)
    log.touch(exist_ok=True)
    run_as.chown(log)
    check_traversable(paths.pg_data, run_as, paths.local)
    check_traversable(log, run_as, paths.local)


def is_initialized(paths: StackPaths) -> bool:
    """True when ``.local/pg/data`` holds a cluster (PG_VERSION exists)."""
    return (paths.pg_data / "PG_VERSION").is_file()


def initdb(paths: StackPaths, bin_dir: Path, run_as: RunAs) -> None:
    """Create the cluster: superuser ``postgres``, trust over the socket, scram over TCP.

    Raises :class:`StackError` when initdb fails.
    """
    _run(
        [str(bin_dir / "initdb"), "-D", str(paths.pg_data), "-U", SUPERUSER,
         "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale"],
        run_as, paths, "initdb",
    )  # fmt: skip
    with (paths.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")


def postmaster_pid(paths: StackPaths) -> int | None:
    """The live server pid from ``postmaster.pid`` in the data directory, if any."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((paths.pg_data / "postmaster.pid").read_text().splitlines()[0])
        if pid_alive(pid):
            return pid
    return None


def is_ready(bin_dir: Path | None = None) -> bool:
    """True when ``pg_isready`` reports the server on 127.0.0.1:55432 accepting connections."""
    pg_isready = (bin_dir or find_bin_dir()) / "pg_isready"
    result = subprocess.run(
        [str(pg_isready), "-q", "-h", HOST, "-p", str(PORT), "-t", "2"], check=False
    )
    return result.returncode == 0


def _psql(paths: StackPaths, bin_dir: Path, sql: str, database: str = "postgres") -> str:
    # Over the unix socket as the superuser: local connections are trusted, so no password.
    argv = [
        str(bin_dir / "psql"), "-h", str(paths.pg_socket_dir), "-p", str(PORT), "-U", SUPERUSER,
        "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", sql,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"postgres: psql failed: {result.stderr.strip()} (sql: {sql[:80]})")
    return result.stdout.strip()


def ensure_database(paths: StackPaths, bin_dir: Path, *, timescaledb: bool = False) -> list[str]:
    """Create role ``tickpipe`` (password ``tickpipe``, CREATEDB, member of
    ``pg_signal_backend``) and its database if missing.

    With ``timescaledb`` the extension is created in the database too. Returns what was created.
    Raises :class:`StackError` when psql fails.
    """
    created = []
    exists = _psql(paths, bin_dir, f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")
    if not exists:
        _psql(paths, bin_dir, f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        created.append(f"role {ROLE}")
    # DROP DATABASE … WITH (FORCE) of a scratch database (tests, benches) terminates every
    # backend in it, including one still starting up, which has no role yet: PostgreSQL refuses
    # that to a role that is neither a superuser nor a member of pg_signal_backend ("must be a
    # member of the role whose process is being terminated"). Granting again is a no-op.
    _psql(paths, bin_dir, f"GRANT pg_signal_backend TO {ROLE}")
    exists = _psql(paths, bin_dir, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
    if not exists:
        _psql(paths, bin_dir, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        created.append(f"database {DATABASE}")
    if timescaledb:
        _psql(paths, bin_dir, "CREATE EXTENSION IF NOT EXISTS timescaledb", DATABASE)
    return created


def start(paths: StackPaths, reporter: Reporter) -> int:
    """Initialise (first time), start and provision the cluster; returns the postmaster pid.

    A server already running from ``.local/pg/data`` is left as is. Raises :class:`StackError`
    when the port is taken by someone else or a step fails (the message names the log).
    """
    bin_dir = stack_bin_dir(paths)
    pid_file = paths.pid_file(NAME)
    timescaledb = extension_available(bin_dir, "timescaledb")
    pid = live_pid(pid_file) or postmaster_pid(paths)
    if pid is not None and timescaledb and not _preloads_timescaledb(paths, bin_dir):
        # Started before bootstrap built TimescaleDB (system binaries): restart on the tree.
        with reporter.step("postgres: restart on the TimescaleDB server tree") as note:
            _pg_ctl_stop(paths)
            note.result = f"pid {pid} stopped"
        pid = None
    if pid is not None:
        with reporter.step(f"postgres: {HOST}:{PORT}") as note:
            wait_until(lambda: is_ready(bin_dir), timeout_s=START_TIMEOUT_S, what="postgres",
                       log=paths.log_file(NAME), pid=pid)  # fmt: skip
            write_pid_file(pid_file, pid)
            note.result = f"already running (pid {pid})"
    else:
        remove_pid_file(pid_file)
        if port_open(PORT):
            raise StackError(
                f"postgres: port {PORT} is in use by a server tickpipe-stack did not start; stop it"
            )
        run_as = ensure_os_user()
        _prepare_dirs(paths, run_as)
        check_traversable(bin_dir / "postgres", run_as, paths.local)
        if not is_initialized(paths):
            with reporter.step(f"postgres: initdb ({bin_dir.parent.name})") as note:
                initdb(paths, bin_dir, run_as)
                note.result = str(paths.pg_data)
        conf = paths.pg_data / CONF_NAME
        conf.write_text(
            render_conf(paths.pg_socket_dir, preload=("timescaledb",) if timescaledb else ())
        )
        run_as.chown(conf)
        with reporter.step(f"postgres: start {HOST}:{PORT}") as note:
            _run(
                [str(bin_dir / "pg_ctl"), "-D", str(paths.pg_data), "-l", str(paths.log_file(NAME)),
                 "-w", "-t", str(int(START_TIMEOUT_S)), "start"],
                run_as, paths, "pg_ctl start",
            )  # fmt: skip
            pid = postmaster_pid(paths)
            if pid is None:
                raise StackError(
                    f"postgres: no postmaster.pid after start; log: {paths.log_file(NAME)}"
                )
            write_pid_file(pid_file, pid)
            wait_until(lambda: is_ready(bin_dir), timeout_s=START_TIMEOUT_S, what="postgres",
                       log=paths.log_file(NAME), pid=pid)  # fmt: skip
            note.result = f"pid {pid}"
    with reporter.step(f"postgres: role+database {ROLE}") as note:
        created = ensure_database(paths, bin_dir, timescaledb=timescaledb)
        note.result = ("created " + ", ".join(created)) if created else "present"
    return pid


def _preloads_timescaledb(paths: StackPaths, bin_dir: Path) -> bool:
    try:
        return "timescaledb" in _psql(paths, bin_dir, "SHOW shared_preload_libraries")
    except StackError:
        return False


def _pg_ctl_stop(paths: StackPaths) -> None:
    _run([str(stack_bin_dir(paths) / "pg_ctl"), "-D", str(paths.pg_data), "-m", "fast", "-w",
          "-t", "60", "stop"], ensure_os_user(), paths, "pg_ctl stop")  # fmt: skip


def stop(paths: StackPaths, reporter: Reporter) -> None:
    """``pg_ctl stop -m fast`` the cluster in ``.local/pg/data``; no-op when it is not running."""
    pid_file = paths.pid_file(NAME)
    pid = live_pid(pid_file) or postmaster_pid(paths)
    if pid is None:
        remove_pid_file(pid_file)
        return
    with reporter.step("postgres: stop") as note:
        _pg_ctl_stop(paths)
        note.result = f"pid {pid} stopped"
    remove_pid_file(pid_file)
