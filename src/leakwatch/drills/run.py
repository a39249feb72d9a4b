"""``leakwatch drill run``: replay a scenario's logs through the real watch path on an
accelerated clock, with canary notifications to a local receiver, then score it.

What a run does, in one drill folder (``--out``):

1. generates the scenario's logs into ``source/`` (``drill generate`` with the drill's start);
2. starts a loopback Standard-Webhooks receiver (:class:`leakwatch.notify.receiver.WebhookReceiver`)
   with a fresh ``whsec_`` secret, and writes ``leakwatch.toml`` (organisation ``… (DRILL)``, the
   scenario's settings, one webhook target pointing at the receiver, rules on
   ``incident.opened``/``incident.escalated`` and on deadlines) and ``secrets.toml`` (0600);
3. runs :class:`leakwatch.watch.Watcher` on ``logs/`` with a :class:`DrillClock` as both its
   monotonic clock and its wall clock: every line of ``source/`` is appended to its file in
   ``logs/`` when scenario time reaches it, and after each batch one real watch cycle scans,
   detects patterns, groups incidents, fires deadline triggers and dispatches the outbox, all in
   scenario time (``--speed 60``: one scenario minute per second);
4. stops when every line is in, the scenario's minutes are over, two cycles found nothing new
   and the outbox is drained (or ``max_drain_s`` real seconds after that point);
5. writes ``run.json`` (clock, per-cycle ids, deliveries in scenario time), ``score.json`` and
   ``score.md`` (:mod:`leakwatch.drills.score`).

Scenario time and the database's clock. The watch path takes the injected clock everywhere,
also for the ``created_at`` of the findings and alerts it stores, so an incident's ``detection``
clock and the ``awareness`` default taken from it are scenario times. The drill still chooses its
start so that scenario time equals the wall clock at the first planted record, and for every
incident it opens sets ``awareness`` to the scenario time of its detection through the ordinary
responder API (:func:`leakwatch.incidents.book.set_clock`, actor ``drill``, with the reason in
the audit trail) before the next cycle fires deadline triggers: what a responder would do, and
what the score checks. Detection times in the score come from the drill's own per-cycle record.

The hook for a console: ``run_drill(..., clock=DrillClock(...), on_event=callback, stop=event)``.
``on_event`` receives :class:`DrillEvent` objects on the drill's thread (start, each cycle with
news, awareness set, each notification the receiver accepted, end with the score); ``clock``
is shared, so countdowns drawn from ``clock.now()`` tick in scenario time, and
:meth:`DrillClock.pause`/``resume``/``set_speed`` act on the running drill.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.drills.generate import GATEWAY_HOST, build, generate
from leakwatch.drills.scenarios import Scenario
from leakwatch.errors import IncidentError, UsageError

#: The receiver's target name in the drill configuration.
TARGET = "drill-receiver"
#: Environment variable / secrets-file key of the receiver's signing secret.
SECRET_VAR = "LEAKWATCH_DRILL_WEBHOOK_SECRET"
#: A header on every drill webhook: the generic webhook body has no place of its own for it.
DRILL_HEADER = "X-Leakwatch-Drill"
#: Real seconds between cycles (the watch default).
INTERVAL_S = 0.25
#: After the last line, the failure-pattern detectors (every 10 scenario seconds at most) need
#: one more pass; two quiet cycles after this much scenario time mean nothing is left to find.
SETTLE_S = 25.0
#: How long (real seconds) the drill waits for the outbox to drain once everything else is done.
MAX_DRAIN_S = 30.0
#: An awareness time this far (scenario seconds) from the detection the drill saw is corrected.
AWARENESS_TOLERANCE_S = 60.0
#: The fastest a drill runs: the longest scenario (1440 minutes) in under 9 s. Faster, a second of
#: real time would be days of scenario time, and scenario dates leave what a datetime can hold.
MAX_SPEED = 10_000.0

BANNER = ("DRILL — synthetic data only: every value in these logs is fictional, every notification goes "
          "to a local receiver started by the drill")

#: The drill organisation (a scenario's `organisation` table overrides keys; the name always ends
#: in "(DRILL)").
ORGANISATION: dict[str, Any] = {
    "name": "Acme Shop GmbH",
    "timezone": "Europe/Berlin",
    "establishment": ["EU"],
    "customer_jurisdictions": ["EU", "UK"],
    "contact_point": "Data Protection Officer (drill), dpo@example.org, +44 20 7946 0000",
    "lead_authority": "Berliner Beauftragte fuer Datenschutz und Informationsfreiheit",
}
#: Settings every drill starts from: the organisation's AI gateway (its services should call AI
#: vendors through it; the gateway's own log shows it calling them on their behalf).
SETTINGS: dict[str, dict[str, Any]] = {
    "egress": {"approved_gateways": [GATEWAY_HOST, "acme-ai.openai.azure.com"], "gateway_sources": ["*/ai-gateway/*"]},
    "incidents": {"group_by": ["dest_vendor", "pattern"], "window_hours": 24},
}


# --- the clock ----------------------------------------------------------------------------------


def check_speed(speed: float, option: str = "--speed") -> float:
    """``speed`` as a float when it is a usable acceleration (finite, more than 0, at most
    :data:`MAX_SPEED`); :class:`UsageError` naming ``option`` otherwise."""
    try:
        x = float(speed)
    except (TypeError, ValueError):
        raise UsageError(f"{option} {speed!r}: not a number") from None
    if math.isnan(x) or x <= 0:
        raise UsageError(f"{option} {x:g}: must be more than 0 (60 is one scenario minute per real second)")
    if x > MAX_SPEED:
        raise UsageError(f"{option} {x:g}: at most {MAX_SPEED:g}, which replays even a day-long scenario in "
                         "under 9 s")
    return x


class DrillClock:
    """Scenario time: starts at ``start`` and runs ``speed`` times faster than the real clock.

    ``now()`` is the aware UTC scenario time (the watch's wall clock), ``monotonic()`` the scenario
    seconds since the start (the watch's idle timers), :meth:`at_wall` maps a real epoch time (a
    receiver's ``received_at``) to scenario time. Pausing and changing the speed keep scenario
    time continuous. Thread-safe."""

    def __init__(self, start: datetime, speed: float = 60.0, *, real: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        if start.tzinfo is None:
            raise UsageError("the drill start time needs a time zone")
        speed = check_speed(speed)
        self.start = start.astimezone(UTC)
        self._real, self._wall = real, wall
        self._lock = threading.Lock()
        # (wall epoch, real monotonic, scenario seconds, speed) at each change; speed 0 = paused.
        self._segments: list[tuple[float, float, float, float]] = [(wall(), real(), 0.0, float(speed))]
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        """Scenario seconds per real second (0 while paused)."""
        return self._segments[-1][3]

    @property
    def rate(self) -> float:
        """The acceleration the clock runs at when not paused."""
        return self._speed

    @property
    def paused(self) -> bool:
        """Whether scenario time stands still."""
        return not self.speed

    def elapsed(self) -> float:
        """Scenario seconds since :attr:`start`."""
        with self._lock:
            _w, r0, s0, sp = self._segments[-1]
            return s0 + (self._real() - r0) * sp

    def monotonic(self) -> float:
        """The watch's monotonic clock: scenario seconds."""
        return self.elapsed()

    # The console's clock protocol (leakwatch.tui.clock.Clock, by duck typing: no Textual here):
    # calling the clock is now(), `label` tags the header, `tick_s` paces countdown refreshes.
    tick_s: float = 1.0

    def __call__(self) -> datetime:
        return self.now()

    @property
    def label(self) -> str:
        """``DRILL 60x`` (``DRILL paused``): the console's header says whose time it shows."""
        return "DRILL paused" if self.paused else f"DRILL {self._speed:g}x"

    def now(self) -> datetime:
        """The watch's wall clock: aware UTC scenario time."""
        return self.start + timedelta(seconds=self.elapsed())

    def minutes(self) -> float:
        """Scenario minutes since the start."""
        return self.elapsed() / 60.0

    def _change(self, speed: float) -> None:
        with self._lock:
            _w, r0, s0, sp = self._segments[-1]
            r, w = self._real(), self._wall()
            self._segments.append((w, r, s0 + (r - r0) * sp, speed))

    def pause(self) -> None:
        """Stop scenario time (countdowns freeze; lines stop being written)."""
        if self.speed:
            self._change(0.0)

    def resume(self) -> None:
        """Let scenario time run again at the last speed."""
        if not self.speed:
            self._change(self._speed)

    def set_speed(self, speed: float) -> None:
        """Change the acceleration from now on."""
        self._speed = check_speed(speed, "speed")
        if self.speed:
            self._change(self._speed)

    def at_wall(self, epoch: float) -> datetime:
        """The scenario time at real epoch time ``epoch``."""
        with self._lock:
            seg = self._segments[0]
            for s in self._segments:
                if s[0] <= epoch:
                    seg = s
            w0, _r0, s0, sp = seg
        return self.start + timedelta(seconds=s0 + (epoch - w0) * sp)

    def real_seconds_until(self, scenario_s: float) -> float:
        """Real seconds until scenario time reaches ``scenario_s`` (inf while paused)."""
        sp = self.speed
        left = scenario_s - self.elapsed()
        if left <= 0:
            return 0.0
        return left / sp if sp else float("inf")


# --- events for a console -------------------------------------------------------------------------


@dataclass
class DrillEvent:
    """Something a console shows. ``kind``: ``start``, ``cycle`` (every watch cycle; ``report``
    is its :class:`leakwatch.watch.CycleReport`, ``data`` has ``news`` and running totals:
    ``lines``/``total`` replayed, ``findings``, ``incidents``, ``sent``), ``awareness`` (set to scenario
    time for incident ``data['incident']``), ``notification`` (the receiver accepted one;
    ``data`` has event, incident, webhook id), ``draining``, ``end`` (``data['score']``).
    ``text`` is one line, masked facts only."""

    kind: str
    at: datetime
    minute: float
    text: str
    report: Any = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrillResult:
    """What :func:`run_drill` leaves: the drill folder, its score and how long it took."""

    out_dir: Path
    score: dict[str, Any]
    real_seconds: float


# --- configuration --------------------------------------------------------------------------------


def config_doc(scenario: Scenario, receiver_url: str) -> dict[str, Any]:
    """The drill's leakwatch.toml as a mapping: organisation, scenario settings, the receiver."""
    org = {**ORGANISATION, **{k: v for k, v in scenario.organisation.items()}}
    name = str(org.get("name") or ORGANISATION["name"]).strip()
    org["name"] = name if name.endswith("(DRILL)") else f"{name} (DRILL)"
    doc: dict[str, Any] = {"organisation": org}
    for section, body in SETTINGS.items():
        doc[section] = dict(body)
    for section, body in scenario.settings.items():
        doc.setdefault(section, {}).update(_plain(body))
    doc["notify"] = {
        "secrets_file": "secrets.toml",
        # Scenario seconds: at --speed 60 a failed delivery is retried within ~0.1 s real time.
        "backoff_base_s": 5.0,
        "backoff_max_s": 60.0,
        "targets": [{"name": TARGET, "kind": "webhook", "url": receiver_url, "credentials": {"secret": SECRET_VAR},
                     "options": {"headers": {DRILL_HEADER: "true"}}, "timeout_s": 10.0}],
        "rules": [
            {"name": "drill: incidents", "on": ["incident.opened", "incident.escalated"], "min_severity": "medium",
             "targets": [TARGET]},
            {"name": "drill: deadlines", "on": ["deadline.approaching", "deadline.missed"], "min_severity": "medium",
             "targets": [TARGET], "before": ["12h", "2h"]},
        ],
    }
    return doc


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def write_config(scenario: Scenario, drill_dir: str | Path, receiver_url: str, secret: str | None = None) -> Path:
    """Write ``leakwatch.toml`` (and ``secrets.toml``, mode 0600, when ``secret`` is given) into
    ``drill_dir``; returns the config file's path."""
    import tomli_w

    d = Path(drill_dir)
    d.mkdir(parents=True, exist_ok=True)
    if secret is not None:
        sp = d / "secrets.toml"
        fd = os.open(sp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f'# The signing secret of this drill\'s local receiver (valid for this drill only).\n'
                    f'{SECRET_VAR} = "{secret}"\n')
        os.chmod(sp, 0o600)
    else:
        sp = d / "secrets.toml"
        if not sp.exists():
            fd = os.open(sp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
    p = d / "leakwatch.toml"
    head = (f"# {BANNER}.\n# Scenario {scenario.id}: {scenario.title}\n"
            "# Written by 'leakwatch drill run'; use it with the drill's database, e.g.\n"
            "#   leakwatch incidents --db drill.duckdb --config leakwatch.toml\n\n")
    p.write_text(head + tomli_w.dumps(config_doc(scenario, receiver_url)), encoding="utf-8")
    return p


def default_start(scenario: Scenario, speed: float, now: datetime | None = None) -> datetime:
    """The start that makes scenario time equal the wall clock when the first planted record
    lands (so the first incident's wall-clock stamps agree with scenario time), whole seconds."""
    speed = check_speed(speed)
    now = now or datetime.now(UTC)
    firsts = [m for p in scenario.plants for m in p.minutes] + [m for a in scenario.activity for m in a.minutes]
    first_s = min(firsts, default=0.0) * 60
    back = first_s * (1 - 1 / speed)
    return (now - timedelta(seconds=back)).replace(microsecond=0)


# --- the run --------------------------------------------------------------------------------------


class _Replayer:
    """Appends the generated lines to the watched files when scenario time reaches them."""

    def __init__(self, source: Path, logs: Path, timeline: dict[str, list[float]]):
        self.source, self.logs = source, logs
        self.queue: list[tuple[float, int, str, int]] = []
        self.lines: dict[str, list[bytes]] = {}
        for order, (rel, times) in enumerate(timeline.items()):
            data = (source / rel).read_bytes()
            lines = data.split(b"\n")[:-1] if data else []
            if len(lines) != len(times):
                raise UsageError(f"{source / rel}: {len(lines)} lines but the timeline has {len(times)}")
            self.lines[rel] = lines
            self.queue += [(t, order, rel, i) for i, t in enumerate(times)]
        self.queue.sort()
        self.pos = 0
        #: Lines appended so far, per file (the score counts only plants on these lines).
        self.written: dict[str, int] = {rel: 0 for rel in self.lines}
        #: The scenario second replayed up to (every line due by then is in).
        self.until = 0.0
        self.handles: dict[str, Any] = {}
        self.last_t = self.queue[-1][0] if self.queue else 0.0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.queue)

    def write_until(self, t: float) -> int:
        """Append every line due by scenario second ``t``; returns how many."""
        n = 0
        touched = set()
        while self.pos < len(self.queue) and self.queue[self.pos][0] <= t:
            _t, _o, rel, i = self.queue[self.pos]
            f = self.handles.get(rel)
            if f is None:
                p = self.logs / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                f = self.handles[rel] = open(p, "ab")  # noqa: SIM115 - kept open for the drill
            f.write(self.lines[rel][i] + b"\n")
            touched.add(rel)
            self.written[rel] += 1
            self.pos += 1
            n += 1
        for rel in touched:
            self.handles[rel].flush()
        self.until = max(self.until, t)
        return n

    def close(self) -> None:
        for f in self.handles.values():
            with contextlib.suppress(OSError):
                f.close()
        self.handles.clear()


def _prepare_dir(out_dir: Path) -> None:
    try:
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise UsageError(f"{out_dir}: already exists and is not empty; give a new --out folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "DRILL.txt").write_text(BANNER + ".\nThis folder holds one leakwatch drill: source/ (generated "
                                           "logs and their ground truth), logs/ (what the watch followed), "
                                           "drill.duckdb, run.json, score.md and score.json.\n", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {e.filename or out_dir}: {e.strerror or e}; give an --out folder "
                         "you can write to") from None


@contextlib.contextmanager
def _loopback_unproxied():
    """Requests to the receiver must not go through an HTTP proxy from the environment."""
    keys = ("NO_PROXY", "no_proxy")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        cur = os.environ.get(k, "")
        if "127.0.0.1" not in cur.split(","):
            os.environ[k] = ",".join(x for x in (cur, "127.0.0.1", "localhost") if x)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_drill(scenario: Scenario, out_dir: str | Path, *, seed: int = 1, speed: float = 60.0, scale: float = 1.0,
              interval: float = INTERVAL_S, clock: DrillClock | None = None,
              on_event: Callable[[DrillEvent], None] | None = None, stop: threading.Event | None = None,
              max_drain_s: float = MAX_DRAIN_S) -> DrillResult:
    """Run one drill into ``out_dir`` (new or empty) and return its score (see the module
    docstring). ``clock`` defaults to a :class:`DrillClock` at ``speed`` starting at
    :func:`default_start`; ``stop`` ends the drill early (it is still scored)."""
    from leakwatch.config import load_config
    from leakwatch.drills.score import score_drill, write_score
    from leakwatch.notify.receiver import WebhookReceiver
    from leakwatch.notify.webhook_verify import new_secret
    from leakwatch.watch import Watcher

    if not 0 < interval <= 3600:  # nan fails both; 1e300 overflowed the wait (exit 70)
        raise UsageError(f"--interval must be more than 0 and at most 3600 seconds, got {interval:g}")
    # Everything the command line gives is checked before the folder is made: a mistake must not
    # leave a half-written folder that the next run with the same --out refuses.
    if clock is None:
        speed = check_speed(speed)
    if not 0 <= scale <= 100:
        raise UsageError(f"--scale {scale:g}: between 0 and 100")
    out = Path(out_dir).resolve()
    _prepare_dir(out)
    stop = stop or threading.Event()
    real0 = time.monotonic()
    if clock is None:
        clock = DrillClock(default_start(scenario, speed), speed)
    # Scenario time stands still while the logs are generated and the watch warms up (imports,
    # rule compilation, the first empty cycle: ~1 s that would be a minute at --speed 60).
    clock.pause()
    gen = generate(scenario, seed, out / "source", start=clock.start, scale=scale)
    timeline = json.loads((out / "source" / "timeline.json").read_text(encoding="utf-8"))["files"]
    logs = out / "logs"
    try:
        logs.mkdir()
    except OSError as e:
        raise UsageError(f"cannot write {logs}: {e.strerror or e}") from None
    emit = on_event or (lambda e: None)
    secret = new_secret()
    length_s = scenario.minutes * 60.0
    cycles: list[dict[str, Any]] = []
    awareness: list[dict[str, Any]] = []
    notes: list[str] = []
    stopped_early = False
    drained = True
    db = out / "drill.duckdb"
    with _loopback_unproxied(), WebhookReceiver(secret) as rx:
        cfg_path = write_config(scenario, out, rx.url, secret)
        config = load_config(cfg_path, env={})
        replay = _Replayer(out / "source", logs, timeline)

        def event(kind: str, text: str, **kw) -> None:
            at = clock.now()
            emit(DrillEvent(kind, at, clock.elapsed() / 60, text, **kw))

        event("start", f"{scenario.id} (seed {seed}): {scenario.minutes} scenario minutes at {clock.rate:g}x, "
                       f"{sum(len(v) for v in timeline.values()):,} lines in {len(timeline)} files",
              data={"scenario": scenario.id, "dir": str(out), "manifest": gen.manifest})
        seen_deliveries = 0
        quiet = 0
        end_reached_at: float | None = None
        try:
            with Watcher([str(logs)], db, config=config, clock=clock.monotonic, now=clock.now,
                         argv=["leakwatch", "drill", "run", scenario.id, "--seed", str(seed)]) as w:
                w.cycle(stop)  # warm-up: nothing to read yet
                clock.resume()
                while True:
                    t = clock.elapsed()
                    written = replay.write_until(t)
                    rep = w.cycle(stop)
                    ids = w.store.con.execute("SELECT (SELECT max(finding_id) FROM findings), "
                                              "(SELECT max(alert_id) FROM alerts)").fetchone()
                    cycles.append({"t": round((rep.at - clock.start).total_seconds(), 3),
                                   "max_finding_id": ids[0], "max_alert_id": ids[1], "lines": written})
                    for iid in rep.opened:
                        fix = _fix_awareness(w.store, iid, cycles, clock)
                        if fix is not None:
                            awareness.append(fix)
                            event("awareness", f"incident #{iid}: awareness set to scenario time "
                                               f"T+{fix['minute']:.1f} min (detection)", data=fix)
                    notes.extend(rep.errors)
                    event("cycle", rep.line() if rep.news() else "", report=rep,
                          data={"news": rep.news(), "lines": replay.pos, "total": len(replay.queue),
                                "findings": w.totals["findings"], "incidents": w.totals["opened"],
                                "sent": w.totals["sent"]})
                    got = rx.deliveries
                    for d in got[seen_deliveries:]:
                        info = _delivery_info(d, clock)
                        event("notification", f"receiver got {info['event']}"
                                              + (f" for incident #{info['incident_id']}" if info["incident_id"] else "")
                                              + f" (signature verified, T+{info['minute']:.1f} min)", data=info)
                    seen_deliveries = len(got)
                    if stop.is_set():
                        stopped_early = True
                        break
                    quiet = quiet + 1 if replay.done and not rep.news() else 0
                    settled = replay.done and t >= max(length_s, replay.last_t + SETTLE_S) and quiet >= 2
                    if settled:
                        pending = w.store.con.execute(
                            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')").fetchone()[0]
                        if not pending:
                            break
                        if end_reached_at is None:
                            end_reached_at = time.monotonic()
                            event("draining", f"waiting for {pending} notification(s) in the outbox")
                        elif time.monotonic() - end_reached_at > max_drain_s:
                            drained = False
                            notes.append(f"outbox not drained after {max_drain_s:g} s: {pending} notification(s) "
                                         "still queued")
                            break
                    # Wait for the next cycle, or less when the next line is due sooner.
                    nxt = replay.queue[replay.pos][0] if not replay.done else None
                    wait = interval if nxt is None else min(interval, clock.real_seconds_until(nxt))
                    if stop.wait(max(0.0, wait)):
                        stopped_early = True
                        break
        finally:
            replay.close()
        # Deliveries that landed during the last cycle's dispatch are already in rx.
        deliveries = [_delivery_info(d, clock) for d in rx.deliveries]
        rejected = [{"webhook_id": i, "reason": r} for i, r in rx.rejected]
        end = clock.now()
    run = {
        "banner": BANNER, "scenario": scenario.id, "seed": seed, "scale": scale,
        "start": clock.start.isoformat(), "end": end.isoformat(), "speed": clock.rate,
        "scenario_minutes": scenario.minutes, "real_seconds": round(time.monotonic() - real0, 3),
        "stopped_early": stopped_early, "outbox_drained": drained, "cycles": cycles, "awareness": awareness,
        # How far the replay got: the scorer counts only the plants on lines written by then.
        "replayed": {"until_s": round(replay.until, 3), "lines": replay.pos, "total": len(replay.queue),
                     "files": dict(replay.written)},
        "deliveries": deliveries, "rejected": rejected, "duplicates": sum(rx.duplicates.values()), "notes": notes,
        "logs_dir": str(logs), "config": str(cfg_path), "database": str(db),
    }
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    score = score_drill(out)
    write_score(out, score)
    event_at = clock.now()
    emit(DrillEvent("end", event_at, clock.elapsed() / 60, "drill finished", data={"score": score}))
    return DrillResult(out, score, run["real_seconds"])


def _delivery_info(d, clock: DrillClock) -> dict[str, Any]:
    """What the score keeps of one accepted webhook: ids, event, incident, times (no body)."""
    try:
        body = d.json()
    except ValueError:
        body = {}
    data = body.get("data") if isinstance(body, dict) else None
    inc = (data or {}).get("incident") or {}
    at = clock.at_wall(d.received_at)
    headers = {k.lower(): v for k, v in d.headers.items()}
    return {"webhook_id": d.webhook_id, "event": body.get("type") if isinstance(body, dict) else None,
            "incident_id": inc.get("id"), "received_at": at.isoformat(),
            "minute": round((at - clock.start).total_seconds() / 60, 3),
            "drill_marked": headers.get(DRILL_HEADER.lower()) == "true", "verified": True,
            "detail": {k: v for k, v in ((data or {}).get("detail") or {}).items()
                       if k in ("regime", "deadline", "label", "due", "before", "from", "to")}}


def _detected_at(cycles: list[dict[str, Any]], finding_id: int | None, alert_id: int | None) -> float | None:
    """Scenario second of the first cycle after which the finding or alert was stored."""
    for c in cycles:
        if (finding_id is not None and c["max_finding_id"] is not None and c["max_finding_id"] >= finding_id) or \
                (alert_id is not None and c["max_alert_id"] is not None and c["max_alert_id"] >= alert_id):
            return c["t"]
    return None


def _fix_awareness(store, incident_id: int, cycles: list[dict[str, Any]], clock: DrillClock) -> dict[str, Any] | None:
    """Set an opened incident's awareness to the scenario time of its detection when the
    database's wall-clock default is further off than :data:`AWARENESS_TOLERANCE_S`."""
    from leakwatch.incidents import book

    con = store.con
    fid, aid = con.execute(
        "SELECT (SELECT min(finding_id) FROM incident_findings WHERE incident_id = $i), "
        "(SELECT min(alert_id) FROM incident_alerts WHERE incident_id = $i)", {"i": incident_id}).fetchone()
    times = [x for x in (_detected_at(cycles, fid, None) if fid is not None else None,
                         _detected_at(cycles, None, aid) if aid is not None else None) if x is not None]
    if not times:
        return None
    det = clock.start + timedelta(seconds=min(times))
    row = con.execute("""SELECT "at", set_by FROM incident_clocks WHERE incident_id = ? AND event = 'awareness'""",
                      [incident_id]).fetchone()
    first = con.execute("SELECT first_seen FROM incidents WHERE incident_id = ?", [incident_id]).fetchone()[0]
    if first is not None:
        det = max(det, first.astimezone(UTC))
    if row is not None and abs((row[0].astimezone(UTC) - det).total_seconds()) <= AWARENESS_TOLERANCE_S:
        return None
    try:
        book.set_clock(store, incident_id, "awareness", det, actor="drill",
                       reason="drill: awareness at detection in scenario time (the database stamps rows with "
                              "the wall clock)", now=clock.now())
    except IncidentError as e:
        return {"incident": incident_id, "error": str(e)}
    return {"incident": incident_id, "at": det.isoformat(), "minute": round((det - clock.start).total_seconds() / 60, 3),
            "was": row[0].astimezone(UTC).isoformat() if row else None}


def preview(scenario: Scenario, seed: int, scale: float = 1.0) -> dict[str, Any]:
    """The manifest a run with this seed would replay (no files written)."""
    _files, manifest = build(scenario, seed, scale=scale)
    return manifest
