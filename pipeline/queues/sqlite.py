"""An SQLite file as a work queue: the embedded default, safe across processes.

Claims run in `BEGIN IMMEDIATE` transactions, so two processes can never lease the same
message; WAL mode keeps readers from blocking the writer. Each claim hands out a fresh
receipt token, and ack/extend/release only act when the token still matches, so a consumer
whose lease expired cannot ack a message another consumer now holds. While a message is
claimed, `visible_at` is its lease deadline, so "the lease still holds" is `visible_at > now`;
a message released with a delay has no receipt and a `visible_at` in the future.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid

from pipeline.errors import ConfigError, QueueError
from pipeline.queues.base import Message, QueueCensus, WorkQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    receipt TEXT,
    dead INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (dead, visible_at, id);
"""


class SQLiteQueue(WorkQueue):
    def __init__(
        self,
        url: str,
        path: str,
        *,
        lease_seconds: float = 300.0,
        max_attempts: int = 5,
        poll_interval: float = 0.1,
        setting: str = "TELEMETRY_QUEUE_URL",
    ) -> None:
        self.url = url
        self.path = path
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self._local = threading.local()
        if lease_seconds <= 0 or max_attempts < 1:
            raise ConfigError(setting, "lease must be positive and max_attempts at least 1")
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            self._db().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(setting, f"cannot open SQLite queue at {path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        # One connection per thread and per process (a fork must not share the parent's).
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def send(self, body: str) -> None:
        now = time.time()
        try:
            self._db().execute(
                "INSERT INTO messages (body, visible_at, created_at) VALUES (?, ?, ?)",
                (body, now, now),
            )
        except sqlite3.Error as exc:
            raise QueueError(f"{self.url}: send failed: {exc}") from exc

    def _claim_once(self, lease: float) -> Message | None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            while True:
                row = db.execute(
                    "SELECT id, body, attempts FROM messages WHERE dead = 0 AND visible_at <= ? "
                    "ORDER BY visible_at, id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return None
                msg_id, body, attempts = row
                if attempts >= self.max_attempts:
                    db.execute(
                        "UPDATE messages SET dead = 1, receipt = NULL WHERE id = ?", (msg_id,)
                    )
                    continue
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET attempts = attempts + 1, visible_at = ?, receipt = ? WHERE id = ?",
                    (now + lease, receipt, msg_id),
                )
                db.execute("COMMIT")
                return Message(str(msg_id), body, receipt, attempts + 1, now + lease)
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def claim(
        self, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Message | None:
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                message = self._claim_once(lease)
            except sqlite3.Error as exc:
                raise QueueError(f"{self.url}: claim failed: {exc}") from exc
            if message is not None or time.monotonic() >= deadline:
                return message
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _update(self, sql: str, params: tuple) -> bool:
        try:
            return self._db().execute(sql, params).rowcount == 1
        except sqlite3.Error as exc:
            raise QueueError(f"{self.url}: {sql.split()[0].lower()} failed: {exc}") from exc

    def ack(self, message: Message) -> bool:
        return self._update(
            "DELETE FROM messages WHERE id = ? AND receipt = ? AND dead = 0 AND visible_at > ?",
            (int(message.id), message.receipt, time.time()),
        )

    def extend(self, message: Message, lease_seconds: float) -> bool:
        now = time.time()
        if self._update(
            "UPDATE messages SET visible_at = ? "
            "WHERE id = ? AND receipt = ? AND dead = 0 AND visible_at > ?",
            (now + lease_seconds, int(message.id), message.receipt, now),
        ):
            message.lease_deadline = now + lease_seconds
            return True
        return False

    def release(self, message: Message, delay_seconds: float = 0.0) -> bool:
        now = time.time()
        return self._update(
            "UPDATE messages SET visible_at = ?, receipt = NULL "
            "WHERE id = ? AND receipt = ? AND dead = 0 AND visible_at > ?",
            (now + delay_seconds, int(message.id), message.receipt, now),
        )

    def depth(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM messages WHERE dead = 0").fetchone()[0]

    # One snapshot: an expired lease (receipt set, visible_at past) is waiting again.
    _CENSUS = (
        "SELECT COALESCE(SUM(visible_at <= :now), 0), "
        "COALESCE(SUM(visible_at > :now AND receipt IS NOT NULL), 0), "
        "COALESCE(SUM(visible_at > :now AND receipt IS NULL), 0), "
        "MIN(CASE WHEN visible_at > :now AND receipt IS NULL THEN visible_at END) "
        "FROM messages WHERE dead = 0"
    )

    def census(self) -> QueueCensus:
        try:
            row = self._db().execute(self._CENSUS, {"now": time.time()}).fetchone()
        except sqlite3.Error as exc:
            raise QueueError(f"{self.url}: census failed: {exc}") from exc
        waiting, in_flight, delayed, next_due = row
        return QueueCensus(waiting, in_flight, delayed, next_due)

    def message_bodies(self) -> list[str]:
        try:
            return [body for (body,) in self._db().execute("SELECT body FROM messages")]
        except sqlite3.Error as exc:
            raise QueueError(f"{self.url}: listing messages failed: {exc}") from exc

    def dead_letter_count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM messages WHERE dead = 1").fetchone()[0]

    def dead_letters(self) -> list[Message]:
        rows = (
            self._db()
            .execute("SELECT id, body, attempts FROM messages WHERE dead = 1 ORDER BY id")
            .fetchall()
        )
        return [Message(str(i), body, "", attempts) for i, body, attempts in rows]

    # Redriving resets the row in place, in one statement: it keeps its id and body, becomes
    # visible now (behind what is already waiting) and counts its attempts from zero again.
    _REDRIVE = "UPDATE messages SET dead = 0, attempts = 0, visible_at = ?, receipt = NULL "

    def redrive(self, message: Message) -> bool:
        try:
            msg_id = int(message.id)
        except ValueError:
            return False
        return self._update(self._REDRIVE + "WHERE id = ? AND dead = 1", (time.time(), msg_id))

    def redrive_all(self) -> int:
        try:
            return self._db().execute(self._REDRIVE + "WHERE dead = 1", (time.time(),)).rowcount
        except sqlite3.Error as exc:
            raise QueueError(f"{self.url}: redrive failed: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
