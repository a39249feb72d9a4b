"""The durable outbox: notifications as rows of the ``outbox`` table, and the dispatcher that
delivers them at least once, and, with the idempotency key checked before a resend, once.

Life of a row::

    pending ──claim──► sending ──2xx──────────────► delivered
       ▲                  │ 429/5xx/timeout/drop
       └──backoff/Retry-After┘      │ other 4xx, or max_attempts reached
                                    ▼
                                   dead ──'leakwatch notify retry'──► pending

- :func:`enqueue` inserts a row inside the caller's transaction: the event that causes a
  notification and the notification are stored together or not at all. The idempotency key is
  unique, so an event that fires twice is one notification.
- :class:`Dispatcher` claims due rows of the targets it has (``pending`` whose
  ``next_attempt_at`` has come, or ``sending`` whose lease ran out or whose owner is gone; rows
  of a target missing from the configuration stay queued and are reported, so that a wrong
  ``--config`` does not turn the queue into dead letters) by setting ``sending`` with a lease,
  commits, then sends outside any transaction, in a small thread pool, one ``requests``
  session per target. A row that may already have reached the target (it was ``sending`` when
  its dispatcher died, or an earlier attempt ended in a timeout) is first looked up at the
  target with ``find_delivered``; webhooks cannot be asked, their receivers deduplicate by the
  ``webhook-id``, which is the idempotency key. Results are written back in one transaction
  per batch.
- Retries: ``attempts`` counts attempts made; after a failed attempt number n the next one is
  due after a random delay in ``[0, min(backoff_max_s, backoff_base_s · 2^(n-1))]`` ("full
  jitter": many notifications failing together do not retry together), or exactly after the
  ``Retry-After`` the target asked for.
- Dead letters (after ``max_attempts``, or at once for an answer retrying cannot fix): the row
  becomes ``dead``; an audit row ``notify.dead_letter`` is appended; rules on
  ``outbox.dead_letter`` get a notification (not for dead canaries or dead dead-letter
  notices: no loops); and it is shown, first and in red, by ``leakwatch notify status``
  (exit 4 with ``--fail-on-dead``) and by ``notify dispatch`` on stderr. It is not written to
  ``alerts``: incident grouping would turn that into a data-leak incident, which it is not.

Owners: DuckDB lets one process write a database file, so a ``sending`` row whose owner is not
a live dispatcher of *this* process was left by a process that died: it is taken over without
waiting for its lease, but not before the attempt it was in is unlikely to land any more (twice
its target's ``timeout_s`` after it began): a lookup made sooner would miss a ticket the far end
is still creating, and the resend would make a second one. For the same reason a retry after an
attempt that got no answer (a timeout, a dropped connection) waits at least the target's
``timeout_s``. Within one process, leases keep dispatchers apart.

What the target sees as the key is the row's idempotency key under the database's own
namespace (derived from its key): two databases (a rebuilt one, a second installation) that
send to one ServiceNow never take each other's tickets for their own.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import duckdb
import numpy as np

from leakwatch.errors import LeakwatchError, StoreError, UsageError
from leakwatch.notify.base import Message, SendResult, Target
from leakwatch.notify.secrets import redact
from leakwatch.threads import DaemonPool

#: Events whose dead letters do not notify anyone (a dead canary is its own report; a dead
#: dead-letter notice would start a loop).
NO_DEAD_LETTER_NOTICE = ("canary", "outbox.dead_letter")
#: Rows claimed per transaction: big enough that the two commits per batch cost little per
#: notification (~2 ms / 64), small enough that a crash re-checks few.
BATCH = 64
ERROR_MAX = 500
#: Results are written back at least this often while a batch is in flight (seconds / results):
#: a slow target (50 ms an answer) would otherwise keep a whole batch unrecorded for seconds.
FLUSH_S = 0.1
FLUSH_N = 32
CONFLICT_RETRIES = 20
def delivery_namespace(key: bytes | None) -> str:
    """The prefix of idempotency keys as targets see them, from the database key: unique per
    database, the same on every run. Empty without a key."""
    if not key:
        return ""
    import hashlib
    import hmac

    return "lw" + hmac.new(key, b"leakwatch delivery namespace", hashlib.sha256).hexdigest()[:10] + ":"

_LIVE_LOCK = threading.Lock()
_LIVE_OWNERS: set[str] = set()


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime: the outbox keeps UTC times, give a zone")
    return t.astimezone(UTC)


def _payload(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=False, default=str)


def enqueue(con: duckdb.DuckDBPyConnection, message: Message, *, now: datetime) -> bool:
    """Insert ``message`` as a ``pending`` row inside the caller's transaction; False when a
    row with its idempotency key exists already (nothing is changed then)."""
    now = _utc(now)
    row = con.execute(
        """INSERT INTO outbox (idempotency_key, incident_id, target, kind, event, payload, status, attempts,
                               next_attempt_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING notification_id""",
        [message.idempotency_key, message.incident_id, message.target, message.kind, message.event,
         _payload(message.body), now, now, now]).fetchone()
    return row is not None


def notification_id(con: duckdb.DuckDBPyConnection, idempotency_key: str) -> int | None:
    """The row id of the notification with ``idempotency_key``."""
    row = con.execute("SELECT notification_id FROM outbox WHERE idempotency_key = ?", [idempotency_key]).fetchone()
    return None if row is None else int(row[0])


def backoff_delay(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds until the next attempt after ``attempts`` (≥ 1) failed ones: uniform in
    ``[0, min(max_s, base_s · 2^(attempts-1))]`` (full jitter)."""
    cap = min(max_s, base_s * (2.0 ** min(max(attempts - 1, 0), 62)))
    return (rng or random).uniform(0.0, cap)


@dataclass
class DispatchStats:
    """What one or more dispatch passes did."""

    claimed: int = 0
    delivered: int = 0
    found: int = 0          # already at the target (found by its idempotency key): not sent again
    retried: int = 0
    dead: int = 0
    dead_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # redacted, one per retried/dead row (the last 20)
    left_sending: int = 0   # sends still waiting on a silent target when the dispatcher stopped

    def add(self, other: DispatchStats) -> None:
        """Add ``other``'s counts to these."""
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.found += other.found
        self.retried += other.retried
        self.dead += other.dead
        self.dead_ids += other.dead_ids
        self.errors = (self.errors + other.errors)[-20:]
        self.left_sending += other.left_sending


@dataclass(frozen=True)
class _Claim:
    notification_id: int
    key: str
    incident_id: int | None
    target: str
    kind: str
    event: str
    payload: str
    attempts: int
    maybe_delivered: bool   # an earlier attempt may have reached the target


@dataclass(frozen=True)
class _Result:
    claim: _Claim
    result: SendResult
    found: bool
    at: datetime


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Delivers the outbox; see the module docstring.

    ``targets``: name → :class:`~leakwatch.notify.base.Target` (rows for a name not in it are
    left queued: :meth:`unroutable`). ``config``: a :class:`leakwatch.config.Config`
    (needed to describe the incident in dead-letter notices) or just its ``NotifyConfig``.
    ``clock()`` returns the aware UTC now; ``sleep(s)`` waits (default: waits on the ``stop``
    event of :meth:`run`); ``rng`` draws the jitter. Use one dispatcher from one thread at a
    time; it opens its own cursor of ``store``'s connection in that thread.
    """

    def __init__(self, store, targets: Mapping[str, Target], config, *, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] | None = None, owner: str | None = None,
                 rng: random.Random | None = None, workers: int | None = None, batch: int = BATCH) -> None:
        self.store = store
        self.targets = dict(targets)
        self.full_config = config if hasattr(config, "notify") else None
        self.config = config.notify if hasattr(config, "notify") else config
        self.clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self.owner = owner or _default_owner()
        self.rng = rng or random.Random()
        self.workers = max(1, workers or self.config.workers)
        self.batch = max(1, batch)
        self._pool: DaemonPool | None = None
        self._stop: threading.Event | None = None   # run/run_once's: a send in flight is not waited for
        self._deadline: float | None = None         # run's timeout, on the monotonic clock
        self._abandoned = False                     # a send thread still runs: close() does not join it
        self._con: duckdb.DuckDBPyConnection | None = None
        self._con_thread: int | None = None
        self.namespace = delivery_namespace(getattr(store, "key", None))
        # Each target's timeout: a retry after no answer waits it out, and an attempt may still
        # land until twice the slowest one has passed since it began.
        self._timeout_s = {name: getattr(t.config, "timeout_s", 10.0) for name, t in self.targets.items()}
        self.landing_s = 2 * max(self._timeout_s.values(), default=10.0)
        with _LIVE_LOCK:
            _LIVE_OWNERS.add(self.owner)

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the send threads and release this dispatcher's name (its leases then count as
        left behind, and are taken over by the next dispatcher). Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=not self._abandoned)
            self._pool = None
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(self.owner)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        me = threading.get_ident()
        if self._con is None or self._con_thread != me:
            if self._con is not None:  # used from another thread now: DuckDB cursors are per thread
                with contextlib.suppress(duckdb.Error):
                    self._con.close()
            self._con = self.store.con.cursor()
            self._con_thread = me
        return self._con

    def _tx(self, what: str):
        return self.store.transaction(what, self._cursor())

    def _in_tx(self, what: str, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """``fn(con)`` in one transaction, retried when it collides with a concurrent writer of
        the same rows (incident code appending to the audit chain from another thread, say:
        DuckDB then aborts one of the two) — up to :data:`CONFLICT_RETRIES` times, waiting a
        random 5-50 ms, then 10-100 ms, … (about 5 s in all)."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                with self._tx(what) as con:
                    return fn(con)
            except StoreError as e:
                conflict = isinstance(e.__cause__, (duckdb.TransactionException, duckdb.ConstraintException))
                if not conflict or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(self.rng.uniform(0.005, 0.05) * min(2 ** attempt, 8))
        raise AssertionError("unreachable")  # pragma: no cover

    def _live_owners(self) -> list[str]:
        with _LIVE_LOCK:
            return sorted(_LIVE_OWNERS)

    # -- claiming ----------------------------------------------------------------------------------

    def _claim(self, now: datetime, n: int, ids: Sequence[int] | None, skip: set[int]) -> list[_Claim]:
        lease = now + timedelta(seconds=self.config.lease_s)
        landed = now - timedelta(seconds=self.landing_s)
        params: list[Any] = [now, now, self._live_owners(), landed, sorted(self.targets)]
        extra = ""
        if ids is not None:
            extra += " AND list_contains(?::BIGINT[], notification_id)"
            params.append([int(i) for i in ids])
        if skip:
            extra += " AND NOT list_contains(?::BIGINT[], notification_id)"
            params.append(sorted(skip))
        def claim(con) -> list[tuple]:
            rows = con.execute(f"""
                SELECT notification_id, idempotency_key, incident_id, target, kind, event, payload, attempts, status,
                       coalesce(tried, false)
                FROM outbox
                WHERE ((status = 'pending' AND next_attempt_at <= ?)
                    OR (status = 'sending' AND (lease_until IS NULL OR lease_until <= ?
                                                OR (NOT list_contains(?::VARCHAR[], lease_owner)
                                                    AND updated_at <= ?))))
                  AND list_contains(?::VARCHAR[], target){extra}
                ORDER BY next_attempt_at, notification_id LIMIT {int(n)}""", params).fetchall()
            if rows:
                con.execute("""UPDATE outbox SET status = 'sending', lease_until = ?, lease_owner = ?, updated_at = ?,
                               tried = true WHERE list_contains(?::BIGINT[], notification_id)""",
                            [lease, self.owner, now, [r[0] for r in rows]])
            return rows

        rows = self._in_tx("claim notifications", claim)
        return [_Claim(int(r[0]), r[1], None if r[2] is None else int(r[2]), r[3], r[4], r[5], r[6], int(r[7]),
                       # A send was started before (this run of attempts, or one before a
                       # 'notify retry'): it may have landed, so the target is asked first.
                       maybe_delivered=(r[8] == "sending" or int(r[7]) > 0 or bool(r[9]))) for r in rows]

    # -- sending (worker threads; no database here) --------------------------------------------

    def _deliver(self, c: _Claim) -> _Result:
        target = self.targets.get(c.target)
        if target is None:
            res = SendResult("failed", error=f"target {c.target!r} is not configured (any more); add it back to "
                                             f"[[notify.targets]] and run 'leakwatch notify retry {c.notification_id}'")
            return _Result(c, res, False, self.clock())
        msg = Message(target=c.target, kind=c.kind, event=c.event, idempotency_key=self.namespace + c.key,
                      body=json.loads(c.payload), incident_id=c.incident_id)
        found = False
        try:
            remote = target.find_delivered(msg) if c.maybe_delivered else None
            if remote:
                res, found = SendResult("delivered", remote_id=str(remote)), True
            else:
                res = target.send(msg)
        except UsageError as e:  # configuration or credentials: waiting will not fix it
            res = SendResult("failed", error=str(e))
        except LeakwatchError as e:  # e.g. the idempotency lookup failed: do not resend blind, retry later
            res = SendResult("retry", error=str(e))
        except Exception as e:  # noqa: BLE001 - a target's bug must not stop the other notifications
            res = SendResult("retry", error=f"{type(e).__name__} in target {c.target}: {e}")
        if res.outcome not in ("delivered", "retry", "failed"):
            res = SendResult("retry", status=res.status, error=f"target {c.target} answered outcome {res.outcome!r}")
        if res.error:
            res = SendResult(res.outcome, status=res.status, remote_id=res.remote_id, retry_after_s=res.retry_after_s,
                             error=redact(res.error)[:ERROR_MAX])
        return _Result(c, res, found, self.clock())

    def _should_stop(self) -> bool:
        return (self._stop is not None and self._stop.is_set()) or \
            (self._deadline is not None and time.monotonic() >= self._deadline)

    def _send_and_apply(self, claims: list[_Claim], stats: DispatchStats) -> None:
        """Send ``claims`` in the pool; write results back as they come, at least every
        :data:`FLUSH_S` or :data:`FLUSH_N` results, so that a crash mid-batch resends (to be
        absorbed by the idempotency check) as little as possible.

        The sends run on daemon threads even one at a time, so that a stop (Ctrl-C, SIGTERM,
        ``--timeout``) is not held up by a target that never answers: what finished is
        recorded, sends not started go back to the queue, and one still waiting stays
        ``sending`` — the next dispatcher asks its target before sending it again."""
        if self._pool is None:
            # Daemon threads: a send blocked on a silent target must not hold a stopped process
            # until its timeout (its row, left 'sending', is taken over by the next dispatcher).
            self._pool = DaemonPool(self.workers, "leakwatch-notify")
        futures = {self._pool.submit(self._deliver, c): c for c in claims}
        waiting = set(futures)
        done_results: list[_Result] = []
        last = time.monotonic()
        while waiting:
            finished, waiting = wait(waiting, timeout=FLUSH_S, return_when=FIRST_COMPLETED)
            done_results += [f.result() for f in finished]
            if done_results and (not waiting or len(done_results) >= FLUSH_N or time.monotonic() - last >= FLUSH_S):
                self._apply(done_results, stats)
                done_results, last = [], time.monotonic()
            if waiting and self._should_stop():
                not_started = [futures[f] for f in waiting if f.cancel()]
                running = len(waiting) - len(not_started)
                if done_results:
                    self._apply(done_results, stats)
                if not_started:
                    self._release(not_started)
                if running:
                    self._abandoned = True
                    stats.left_sending += running
                return

    def _release(self, claims: list[_Claim]) -> None:
        """Claims whose send never started go back to ``pending``, due at once."""
        ids = [c.notification_id for c in claims]

        def release(con) -> None:
            con.execute("""UPDATE outbox SET status = 'pending', lease_until = NULL, lease_owner = NULL
                           WHERE list_contains(?::BIGINT[], notification_id) AND status = 'sending'
                             AND lease_owner = ?""", [ids, self.owner])

        self._in_tx("put unsent notifications back", release)

    # -- writing results ---------------------------------------------------------------------------

    def _apply(self, results: list[_Result], stats: DispatchStats) -> None:
        ids, statuses, attempts, next_at, last_status, last_error, remote, delivered_at = [], [], [], [], [], [], [], []
        dead: list[_Result] = []
        for r in results:
            c, res = r.claim, r.result
            n = c.attempts + (0 if r.found else 1)
            at = r.at.timestamp()
            if res.outcome == "delivered":
                status, nxt = "delivered", at
                stats.delivered += 1
                stats.found += int(r.found)
            elif res.outcome == "retry" and n < self.config.max_attempts:
                status = "pending"
                wait = res.retry_after_s if res.retry_after_s is not None else \
                    backoff_delay(n, self.config.backoff_base_s, self.config.backoff_max_s, self.rng)
                if res.status is None:
                    # No answer (a timeout, a dropped connection): the request may still land, so
                    # the lookup before the next attempt waits until it no longer can.
                    wait = max(wait, self._timeout_s.get(c.target, 10.0))
                nxt = at + max(0.0, wait)
                stats.retried += 1
            else:
                status, nxt = "dead", at
                stats.dead += 1
                stats.dead_ids.append(c.notification_id)
                dead.append(r)
            if res.error:
                stats.errors = (stats.errors + [f"#{c.notification_id} {c.target}: {res.error}"])[-20:]
            ids.append(c.notification_id)
            statuses.append(status)
            attempts.append(n)
            next_at.append(nxt)
            last_status.append(-1 if res.status is None else int(res.status))
            last_error.append(res.error or "")
            remote.append(res.remote_id or "")
            delivered_at.append(at if status == "delivered" else np.nan)
        cols = {
            "id": np.array(ids, dtype=np.int64), "status": np.array(statuses, dtype=object),
            "attempts": np.array(attempts, dtype=np.int64), "next_at": np.array(next_at, dtype=np.float64),
            "last_status": np.array(last_status, dtype=np.int64), "last_error": np.array(last_error, dtype=object),
            "remote_id": np.array(remote, dtype=object), "delivered_at": np.array(delivered_at, dtype=np.float64),
        }
        now = self.clock()
        self._in_tx("record delivery results", lambda con: self._write_results(con, cols, dead, now))

    def _write_results(self, con, cols: Mapping[str, Any], dead: list[_Result], now: datetime) -> None:
        """One transaction (retried as a whole on a write conflict): the results, then the audit
        rows and dead-letter notices of the dead rows that were still ours."""
        con.register("_lw_outbox_res", cols)
        try:
            # Only rows still leased to us: if our lease ran out and another dispatcher took a
            # row over, its result is the one that counts.
            applied = con.execute("""
                UPDATE outbox SET status = r.status, attempts = r.attempts,
                    next_attempt_at = to_timestamp(r.next_at),
                    last_status = CASE WHEN r.last_status < 0 THEN NULL ELSE r.last_status END,
                    last_error = CASE WHEN r.last_error = '' THEN outbox.last_error ELSE r.last_error END,
                    remote_id = CASE WHEN r.remote_id = '' THEN outbox.remote_id ELSE r.remote_id END,
                    delivered_at = CASE WHEN isnan(r.delivered_at) THEN NULL ELSE to_timestamp(r.delivered_at) END,
                    lease_until = NULL, lease_owner = NULL, updated_at = ?
                FROM _lw_outbox_res r
                WHERE outbox.notification_id = r.id AND outbox.status = 'sending' AND outbox.lease_owner = ?
                RETURNING outbox.notification_id""", [now, self.owner]).fetchall()
        finally:
            con.unregister("_lw_outbox_res")
        mine = {int(i) for (i,) in applied}
        # Deliveries get no audit row: the outbox row (delivered_at, remote_id) is the record, and
        # an audit append per batch would collide, every 100 ms, with incident changes made
        # meanwhile by another thread (both extend the one audit chain). Dead letters are rare.
        for r in dead:
            if r.claim.notification_id not in mine:
                continue
            if r.claim.event != "canary":
                self._audit(con, "notify.dead_letter", r, now)
            if r.claim.event not in NO_DEAD_LETTER_NOTICE:
                self._dead_letter_notices(con, r, now)

    def _audit(self, con, action: str, r: _Result, now: datetime) -> None:
        from leakwatch.incidents import audit

        c, res = r.claim, r.result
        detail: dict[str, Any] = {"notification": c.notification_id, "target": c.target, "kind": c.kind, "event": c.event,
                                  "attempts": c.attempts + (0 if r.found else 1)}
        if res.remote_id:
            detail["remote_id"] = res.remote_id
        if r.found:
            detail["found_at_target"] = True
        if action == "notify.dead_letter":
            detail["last_status"] = res.status
            detail["last_error"] = res.error
        audit.append(con, self.store.key, actor="leakwatch", action=action, incident_id=c.incident_id, at=now,
                     detail=detail)

    def _dead_letter_notices(self, con, r: _Result, now: datetime) -> None:
        from leakwatch.notify.triggers import enqueue_dead_letter

        enqueue_dead_letter(con, self.full_config, self.targets, notification_id=r.claim.notification_id,
                            incident_id=r.claim.incident_id, target=r.claim.target, event=r.claim.event,
                            attempts=r.claim.attempts + 1, last_status=r.result.status, last_error=r.result.error,
                            now=now, notify_config=self.config)

    # -- passes --------------------------------------------------------------------------------------

    def run_once(self, limit: int | None = None, *, ids: Sequence[int] | None = None,
                 stop: threading.Event | None = None) -> DispatchStats:
        """Deliver the notifications due now (at most ``limit``; only ``ids`` when given), each
        at most once in this pass, stopping between batches when ``stop`` is set; returns what
        happened. Rows of targets not in ``targets`` are left alone (see :meth:`unroutable`)."""
        stats = DispatchStats()
        seen: set[int] = set()
        outer = self._stop
        if stop is not None:
            self._stop = stop
        try:
            while (limit is None or stats.claimed < limit) and not self._should_stop():
                n = self.batch if limit is None else min(self.batch, limit - stats.claimed)
                claims = self._claim(self.clock(), n, ids, seen)
                if not claims:
                    break
                stats.claimed += len(claims)
                seen.update(c.notification_id for c in claims)
                self._send_and_apply(claims, stats)
        finally:
            self._stop = outer
        return stats

    def pending(self) -> int:
        """Rows of this dispatcher's targets not yet delivered or dead (``pending``, ``sending``)."""
        return int(self._cursor().execute(
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') AND list_contains(?::VARCHAR[], target)",
            [sorted(self.targets)]).fetchone()[0])

    def unroutable(self) -> dict[str, int]:
        """Target name → undelivered rows for targets this dispatcher does not have (removed
        from the configuration, or the wrong ``--config``): left queued, never claimed."""
        return dict(self._cursor().execute(
            "SELECT target, count(*) FROM outbox WHERE status IN ('pending', 'sending') "
            "AND NOT list_contains(?::VARCHAR[], target) GROUP BY ALL ORDER BY 1", [sorted(self.targets)]).fetchall())

    def next_due(self) -> datetime | None:
        """When the next row becomes due (a pending row's next attempt, or a lease's end)."""
        row = self._cursor().execute("""SELECT min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE lease_until END)
                                        FROM outbox WHERE status IN ('pending', 'sending')
                                        AND list_contains(?::VARCHAR[], target)""", [sorted(self.targets)]).fetchone()
        return None if row[0] is None else row[0].astimezone(UTC)

    def run(self, stop: threading.Event, *, until_empty: bool = False, poll_s: float = 1.0,
            tick: Callable[[], Any] | None = None, timeout_s: float | None = None) -> DispatchStats:
        """Dispatch until ``stop`` is set (or, ``until_empty``, until nothing is pending or
        sending; or ``timeout_s`` seconds passed). ``tick()`` runs before each pass (e.g.
        :func:`~leakwatch.notify.triggers.fire_deadlines`). Between passes it waits for the next
        due row, at most ``poll_s``."""
        total = DispatchStats()
        started = time.monotonic()
        self._stop = stop
        self._deadline = None if timeout_s is None else started + timeout_s
        try:
            while not stop.is_set():
                if tick is not None:
                    tick()
                total.add(self.run_once(stop=stop))
                if until_empty and self.pending() == 0:
                    break
                left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
                if left is not None and left <= 0:
                    break
                nxt = self.next_due()
                wait = poll_s if nxt is None else min(poll_s, max(0.005, (nxt - self.clock()).total_seconds()))
                if left is not None:
                    wait = min(wait, left)
                if self._sleep is not None:
                    self._sleep(wait)
                else:
                    stop.wait(wait)
        finally:
            self._stop = None
            self._deadline = None
        return total


# --- status and hand operations ------------------------------------------------------------------------


def outbox_status(con: duckdb.DuckDBPyConnection, now: datetime, *, dead_limit: int = 50) -> dict[str, Any]:
    """Counts per status and target, the oldest undelivered notification, the next due time
    and the dead letters (``last_error`` redacted when stored; redacted again here)."""
    now = _utc(now)
    counts: dict[str, dict[str, int]] = {}
    totals = {s: 0 for s in ("pending", "sending", "delivered", "dead")}
    for target, status, n in con.execute("SELECT target, status, count(*) FROM outbox GROUP BY ALL ORDER BY 1, 2").fetchall():
        counts.setdefault(target, {s: 0 for s in totals})[status] = int(n)
        totals[status] += int(n)
    oldest = con.execute("""SELECT notification_id, target, event, created_at, attempts, last_error FROM outbox
                            WHERE status IN ('pending', 'sending') ORDER BY created_at, notification_id LIMIT 1""").fetchone()
    nxt = con.execute("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()[0]
    dead = con.execute("""SELECT notification_id, incident_id, target, kind, event, attempts, last_status, last_error,
                                 updated_at FROM outbox WHERE status = 'dead' ORDER BY updated_at DESC, notification_id DESC
                          LIMIT ?""", [dead_limit]).fetchall()
    out: dict[str, Any] = {"now": now, "totals": totals, "by_target": counts, "oldest_pending": None,
                           "next_attempt_at": nxt.astimezone(UTC) if nxt else None, "dead_letters": []}
    if oldest:
        created = oldest[3].astimezone(UTC)
        out["oldest_pending"] = {"notification_id": oldest[0], "target": oldest[1], "event": oldest[2],
                                 "created_at": created, "age_s": round((now - created).total_seconds(), 1),
                                 "attempts": oldest[4], "last_error": redact(oldest[5]) or None}
    for nid, iid, target, kind, event, attempts, last_status, last_error, at in dead:
        out["dead_letters"].append({"notification_id": nid, "incident_id": iid, "target": target, "kind": kind,
                                    "event": event, "attempts": attempts, "last_status": last_status,
                                    "last_error": redact(last_error) or None, "dead_since": at.astimezone(UTC)})
    return out


def retry_dead(store, ids: Sequence[int] | None, *, now: datetime, actor: str) -> list[int]:
    """Put dead letters (``ids``, or all when None) back to ``pending``, due now, with their
    attempt count reset; one audit row each. Returns the ids requeued; :class:`UsageError`
    for an id that is not a dead letter."""
    from leakwatch.incidents import audit
    from leakwatch.store.db import private_umask

    now = _utc(now)
    con = store.con
    with private_umask():
        con.begin()
        try:
            if ids is None:
                rows = con.execute("SELECT notification_id, incident_id, target, event, status FROM outbox "
                                   "WHERE status = 'dead' ORDER BY notification_id").fetchall()
            else:
                rows = con.execute("SELECT notification_id, incident_id, target, event, status FROM outbox "
                                   "WHERE list_contains(?::BIGINT[], notification_id) ORDER BY notification_id",
                                   [[int(i) for i in ids]]).fetchall()
                found = {r[0] for r in rows}
                missing = [i for i in ids if int(i) not in found]
                if missing:
                    raise UsageError(f"no notification with id {', '.join(map(str, missing))} (see 'leakwatch notify status')")
                not_dead = [f"{r[0]} is {r[4]}" for r in rows if r[4] != "dead"]
                if not_dead:
                    raise UsageError("only dead letters can be retried: " + "; ".join(not_dead))
            requeued = [int(r[0]) for r in rows]
            if requeued:
                con.execute("""UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, lease_until = NULL,
                               lease_owner = NULL, updated_at = ? WHERE list_contains(?::BIGINT[], notification_id)""",
                            [now, now, requeued])
                for nid, iid, target, event, _status in rows:
                    audit.append(con, store.key, actor=actor, action="notify.retry", incident_id=iid, at=now,
                                 detail={"notification": nid, "target": target, "event": event})
            con.commit()
        except duckdb.Error as e:
            con.rollback()
            raise StoreError(f"{store.path}: cannot requeue notifications: {e}") from e
        except BaseException:
            con.rollback()
            raise
    return requeued


#: ``last_error`` of a notification a responder cancelled (it is stored as a dead letter: the
#: outbox has no other final state that is not "delivered", and a dead letter can be retried).
CANCELLED_PREFIX = "cancelled by "


def cancel_pending(store, ids: Sequence[int], *, now: datetime, actor: str, reason: str | None = None) -> list[int]:
    """Cancel pending notifications (``ids``) before they are sent: each becomes a dead letter
    whose ``last_error`` says who cancelled it and why (so ``notify retry`` can undo it), with
    one ``notify.cancel`` audit row each. A ``sending`` row may already be on its way and is
    refused, like one that was delivered. Returns the ids cancelled; :class:`UsageError` for an
    id that is not pending (nothing is changed then)."""
    from leakwatch.incidents import audit
    from leakwatch.incidents.notices_guard import check_free_text
    from leakwatch.store.db import private_umask

    now = _utc(now)
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        raise UsageError("say which notifications to cancel")
    if reason and reason.strip():
        check_free_text(reason, "reason")  # the audit trail is append-only: no raw values in it
    note = (CANCELLED_PREFIX + actor + (f": {reason.strip()}" if reason and reason.strip() else ""))[:ERROR_MAX]
    con = store.con
    with private_umask():
        con.begin()
        try:
            rows = con.execute("SELECT notification_id, incident_id, target, event, status FROM outbox "
                               "WHERE list_contains(?::BIGINT[], notification_id) ORDER BY notification_id",
                               [wanted]).fetchall()
            missing = [i for i in wanted if i not in {r[0] for r in rows}]
            if missing:
                raise UsageError(f"no notification with id {', '.join(map(str, missing))} (see 'leakwatch notify status')")
            not_pending = [f"{r[0]} is {r[4]}" for r in rows if r[4] != "pending"]
            if not_pending:
                raise UsageError("only pending notifications can be cancelled: " + "; ".join(not_pending))
            con.execute("""UPDATE outbox SET status = 'dead', last_error = ?, lease_until = NULL, lease_owner = NULL,
                           updated_at = ? WHERE list_contains(?::BIGINT[], notification_id) AND status = 'pending'""",
                        [note, now, wanted])
            for nid, iid, target, event, _status in rows:
                audit.append(con, store.key, actor=actor, action="notify.cancel", incident_id=iid, at=now,
                             reason=reason.strip() if reason and reason.strip() else None,
                             detail={"notification": nid, "target": target, "event": event})
            con.commit()
        except duckdb.Error as e:
            con.rollback()
            raise StoreError(f"{store.path}: cannot cancel notifications: {e}") from e
        except BaseException:
            con.rollback()
            raise
    return wanted


def step_notifications(con: duckdb.DuckDBPyConnection, incident_id: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(playbook id, step id) → the ``step.notify`` notifications queued for that step of the
    incident, oldest first, each ``{notification_id, target, status, attempts, last_error,
    created_at, delivered_at}`` (read from the idempotency key
    ``step.notify:<incident>:<target>:<playbook>.<step>:<from>-><to>``)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows = con.execute("""SELECT notification_id, idempotency_key, target, status, attempts, last_error, created_at, delivered_at
                          FROM outbox WHERE incident_id = ? AND event = 'step.notify'
                          ORDER BY created_at, notification_id""", [incident_id]).fetchall()
    for nid, key, target, status, attempts, last_error, created, delivered in rows:
        parts = key.split(":", 4)
        if len(parts) < 4 or "." not in parts[3]:
            continue
        playbook, step = parts[3].split(".", 1)
        out.setdefault((playbook, step), []).append({
            "notification_id": int(nid), "target": target, "status": status, "attempts": int(attempts),
            "last_error": redact(last_error) or None, "created_at": created.astimezone(UTC),
            "delivered_at": delivered.astimezone(UTC) if delivered else None})
    return out
