"""The registry lock of a shared MLflow server: a PostgreSQL advisory lock (orchestration/registry_lock.py),
against the machine's PostgreSQL."""

import threading
import time
import uuid
from contextlib import closing

import psycopg2
import pytest

from orchestration.registry_lock import RegistryLockLost, advisory_lock

URL = "postgresql://postgres@127.0.0.1:5432/test"


def _end_lock_sessions(name_waiting: bool | None = None) -> int:
    """End the sessions holding (or waiting for) Setlist registry locks, as a database restart would."""
    waiting = {
        None: "",
        True: "AND wait_event_type = 'Lock'",
        False: "AND wait_event_type IS DISTINCT FROM 'Lock'",
    }
    with closing(psycopg2.connect(URL)) as admin, admin.cursor() as cursor:
        admin.autocommit = True
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = 'test' AND application_name = 'setlist-registry-lock' {waiting[name_waiting]}"
        )
        return cursor.fetchone()[0]


def test_a_second_holder_waits_until_the_first_releases():
    name, spans = f"test {uuid.uuid4()}", []

    def hold(seconds: float) -> None:
        with advisory_lock(URL, name):
            start = time.monotonic()
            time.sleep(seconds)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold, args=(0.5,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    spans.sort()
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_a_session_ended_while_held_is_reported_on_release():
    with pytest.raises(RegistryLockLost, match="lost its PostgreSQL session while held"):  # noqa: SIM117
        with advisory_lock(URL, f"test {uuid.uuid4()}"):
            assert _end_lock_sessions(name_waiting=False) >= 1


def test_a_session_ended_while_waiting_fails_before_writing():
    name, raised = f"test {uuid.uuid4()}", []

    def wait() -> None:
        try:
            with advisory_lock(URL, name):
                raised.append(None)
        except RegistryLockLost as err:
            raised.append(err)

    with advisory_lock(URL, name):
        waiter = threading.Thread(target=wait)
        waiter.start()
        deadline = time.monotonic() + 10
        while not _end_lock_sessions(name_waiting=True):
            assert time.monotonic() < deadline, "the second holder never waited"
            time.sleep(0.05)
        waiter.join(timeout=10)
    assert len(raised) == 1 and "while waiting" in str(raised[0]) and "nothing was written" in str(raised[0])
