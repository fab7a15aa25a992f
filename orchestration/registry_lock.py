"""A lock around MLflow registry writes that holds between processes on different machines.

Registry writes are get-or-create: look for the experiment, prompt version, model version or fingerprinted
run, and create it when there is none. Two runs doing that at once against a shared tracking server would
both create. Locally a file lock beside the SQLite store serialises them (`local_state.file_lock`); against
a server, every worker takes a PostgreSQL advisory lock instead, which the database releases by itself when
the holder's session ends (a killed process, a lost host).
"""

import hashlib
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg2


class RegistryLockLost(RuntimeError):
    """The lock's PostgreSQL session ended while it was held, so another process may have written too."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def advisory_lock(url: str, name: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock `name` on the database at `url` for the block."""
    key = lock_key(name)
    # Keepalives: a holder whose host vanishes loses its session (and the lock) in about a minute.
    connection = psycopg2.connect(
        url,
        application_name="setlist-registry-lock",
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    with closing(connection):
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg2.OperationalError as err:
            raise RegistryLockLost(
                f"the registry lock {name!r} lost its PostgreSQL session while waiting: {_said(err)}; nothing was written: rerun"
            ) from err
        yield
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg2.Error as err:
            raise RegistryLockLost(
                f"the registry lock {name!r} lost its PostgreSQL session while held: {_said(err)}; another run "
                "may have written at the same time: rerun to reconcile"
            ) from err


def _said(err: psycopg2.Error) -> str:
    return " ".join(str(err).split()) or err.__class__.__name__
