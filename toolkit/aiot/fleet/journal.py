"""The gateway's store-and-forward journal: device events on disk (SQLite, synchronous=FULL)
before the device is told it may forget them, published to the broker in order later.

Each device's messages get a number ``n`` (1, 2, ...) in the order they were journaled;
the message id ``<journal epoch>-<device>-<n>`` is what a consumer de-duplicates on (the
broker may see a message twice: at-least-once). The epoch is drawn when the journal file
is created, so a new journal never reuses an old journal's ids.

Durability: :meth:`Journal.append` returns only once the rows are fsync'd (one transaction
per device batch). What was published is recorded lazily (:meth:`Journal.mark_published`
batches many PUBACKs into one commit): losing such a record only means the message is
published again, which the message id absorbs."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from aiot.errors import ToolkitError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    last_n INTEGER NOT NULL DEFAULT 0,     -- the last message number given out
    published_n INTEGER NOT NULL DEFAULT 0, -- every message up to this one was PUBACKed
    boot INTEGER NOT NULL DEFAULT 0,       -- device restarts seen (event seqs start again at each)
    uptime INTEGER NOT NULL DEFAULT 0      -- the device's uptime when last seen (ticks)
);
CREATE TABLE IF NOT EXISTS messages (
    device TEXT NOT NULL,
    n INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    origin TEXT,                           -- the device's own identity of the event, to drop re-sends
    PRIMARY KEY (device, n)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_origin ON messages (device, origin) WHERE origin IS NOT NULL;
CREATE TABLE IF NOT EXISTS commands (          -- commands from the broker (aiot/<site>/<device>/cmd)
    id TEXT PRIMARY KEY,                       -- the sender's command id: a command runs once
    device TEXT NOT NULL,
    received INTEGER NOT NULL,                 -- arrival order
    body TEXT NOT NULL,                        -- the command (JSON)
    state TEXT NOT NULL DEFAULT 'pending',     -- pending, then the step reached; 'done' at the end
    since REAL                                 -- when the state was entered (time.time())
);
"""

#: Published messages kept per device after pruning: enough to recognise every event a
#: device can send again after the gateway restarts (its ring, 16, and one batch of them).
KEEP_PUBLISHED = 256


@dataclass(frozen=True)
class Message:
    device: str
    n: int
    kind: str
    payload: dict
    message_id: str


class Journal:
    """One SQLite file shared by every device a gateway bridges (thread-safe)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before append() returns
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ToolkitError(f"{self.path}: cannot open the gateway journal: {e}",
                               hint="is it an aiot gateway journal? Point --journal at a new file to start a "
                                    "fresh one (its unpublished events are then not sent)") from None
        self._lock = threading.Lock()
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
            if row is None:
                self.epoch = secrets.token_hex(4)
                self._db.execute("INSERT INTO meta VALUES ('epoch', ?)", (self.epoch,))
            else:
                self.epoch = row[0]

    def message_id(self, device: str, n: int) -> str:
        return f"{self.epoch}-{device}-{n}"

    def append(self, device: str, items: list[tuple[str, dict, str | None]]) -> list[Message]:
        """Journal ``(kind, payload, origin)`` items in order, durably; returns the new messages.
        An item whose ``origin`` (the device's identity of the event) is already journaled for
        this device is a re-send and is dropped."""
        new: list[Message] = []
        if not items:
            return new
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR IGNORE INTO devices (device) VALUES (?)", (device,))
                (n,) = db.execute("SELECT last_n FROM devices WHERE device=?", (device,)).fetchone()
                for kind, payload, origin in items:
                    if origin is not None and db.execute(
                            "SELECT 1 FROM messages WHERE device=? AND origin=?", (device, origin)).fetchone():
                        continue
                    n += 1
                    body = dict(payload, id=self.message_id(device, n), device=device, n=n, kind=kind)
                    db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                               (device, n, kind, json.dumps(body, sort_keys=True), origin))
                    new.append(Message(device, n, kind, body, body["id"]))
                db.execute("UPDATE devices SET last_n=? WHERE device=?", (n, device))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    def unpublished(self, device: str, after: int | None = None, limit: int = 100) -> list[Message]:
        """Messages not yet PUBACKed, oldest first, after message ``after`` (default: the
        last one recorded as published)."""
        with self._lock:
            if after is None:
                row = self._db.execute("SELECT published_n FROM devices WHERE device=?", (device,)).fetchone()
                after = row[0] if row else 0
            rows = self._db.execute(
                "SELECT n, kind, payload FROM messages WHERE device=? AND n>? ORDER BY n LIMIT ?",
                (device, after, limit)).fetchall()
        return [Message(device, n, kind, json.loads(p), self.message_id(device, n)) for n, kind, p in rows]

    def last(self, device: str, kind: str) -> dict | None:
        """The payload of ``device``'s newest journaled message of ``kind`` (None if none is kept)."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM messages WHERE device=? AND kind=? ORDER BY n DESC LIMIT 1",
                                   (device, kind)).fetchone()
        return json.loads(row[0]) if row else None

    def boot(self, device: str, uptime: int) -> int:
        """The device's boot number, given its uptime now: an uptime lower than the last one
        seen means it restarted since (a new boot, whose events are all new even where their
        seq and timestamp repeat an earlier boot's)."""
        with self._lock:
            db = self._db
            db.execute("INSERT OR IGNORE INTO devices (device) VALUES (?)", (device,))
            boot, last = db.execute("SELECT boot, uptime FROM devices WHERE device=?", (device,)).fetchone()
            if uptime < last:
                boot += 1
            db.execute("UPDATE devices SET boot=?, uptime=? WHERE device=?", (boot, int(uptime), device))
            return boot

    def restarted(self, device: str) -> int:
        """``device`` was restarted by this gateway (a commanded reboot): a new boot begins
        now, whatever its uptime says (a clock that does not go back, as the host build's,
        or a reading taken too late to see it go down). Returns the new boot number."""
        with self._lock:
            db = self._db
            db.execute("INSERT OR IGNORE INTO devices (device) VALUES (?)", (device,))
            (boot,) = db.execute("SELECT boot FROM devices WHERE device=?", (device,)).fetchone()
            db.execute("UPDATE devices SET boot=?, uptime=0 WHERE device=?", (boot + 1, device))
            return boot + 1

    def mark_published(self, device: str, upto: int) -> None:
        """Every message of ``device`` up to number ``upto`` reached the broker."""
        with self._lock:
            self._db.execute("UPDATE devices SET published_n=MAX(published_n, ?) WHERE device=?", (upto, device))

    def backlog(self, device: str | None = None) -> int:
        """Messages journaled but not yet published (of one device, or of all)."""
        with self._lock:
            q = "SELECT COALESCE(SUM(last_n - published_n), 0) FROM devices"
            return int(self._db.execute(q + " WHERE device=?", (device,)).fetchone()[0] if device
                       else self._db.execute(q).fetchone()[0])

    def devices(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT device FROM devices ORDER BY device")]

    def prune(self, keep: int = KEEP_PUBLISHED) -> int:
        """Forget published messages but each device's last ``keep``; returns how many went."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM messages WHERE EXISTS (SELECT 1 FROM devices d WHERE d.device=messages.device "
                "AND messages.n <= d.published_n AND messages.n <= d.last_n - ?)", (keep,))
            return cur.rowcount

    # commands -------------------------------------------------------------------------------

    def add_command(self, device: str, cid: str, body: dict) -> bool:
        """Keep a command until it is done (durably, before the broker hears it arrived);
        False if a command with this id was seen before (a re-delivery: it runs once)."""
        import time

        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM commands WHERE id=?", (cid,)).fetchone():
                    db.execute("COMMIT")
                    return False
                (k,) = db.execute("SELECT COALESCE(MAX(received), 0) + 1 FROM commands").fetchone()
                db.execute("INSERT INTO commands (id, device, received, body, since) VALUES (?, ?, ?, ?, ?)",
                           (cid, device, k, json.dumps(body), time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    def pending_commands(self, device: str) -> list[tuple[str, dict, str, float]]:
        """``device``'s commands not done yet, oldest first: (id, body, state, since)."""
        with self._lock:
            rows = self._db.execute("SELECT id, body, state, since FROM commands WHERE device=? AND state != 'done' "
                                    "ORDER BY received", (device,)).fetchall()
        return [(cid, json.loads(body), state, since) for cid, body, state, since in rows]

    def claim_command(self, cid: str) -> bool:
        """Move a pending command to 'sending'; False if it is no longer pending (withdrawn)."""
        import time

        with self._lock:
            cur = self._db.execute("UPDATE commands SET state='sending', since=? WHERE id=? AND state='pending'",
                                   (time.time(), cid))
            return cur.rowcount == 1

    def withdraw_command(self, cid: str) -> tuple[str, dict] | None:
        """End a command that has not started (still pending): (device, body), or None if it
        is unknown here or already started (a started update runs to its end)."""
        with self._lock:
            row = self._db.execute("SELECT device, body FROM commands WHERE id=? AND state='pending'",
                                   (cid,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE commands SET state='done', body=json_remove(body, '$.image') WHERE id=?", (cid,))
        return row[0], json.loads(row[1])

    def set_command_state(self, cid: str, state: str) -> None:
        import time

        with self._lock:
            # a finished command no longer needs its release bytes
            self._db.execute("UPDATE commands SET state=?, since=?, body=CASE WHEN ?='done' "
                             "THEN json_remove(body, '$.image') ELSE body END WHERE id=?",
                             (state, time.time(), state, cid))

    def close(self) -> None:
        with self._lock:
            self._db.close()
