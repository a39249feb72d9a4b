"""Scoring a drill: what the tool found and when, against the ground truth, in scenario time.

Inputs, all in the drill folder: ``source/manifest.json`` (what was planted where, which
incidents and regimes are expected), ``run.json`` (the clock, the ids stored by each watch
cycle, the notifications the receiver accepted) and ``drill.duckdb`` (read only).

- **Detection.** A planted leak is *detected* when a finding of its entity overlaps its byte
  span on its line; recall = detected / planted. Precision counts findings at ``medium`` or
  above: those overlapping a planted span (of any entity: the same value seen by two rules) are
  true, the others false positives on background traffic. Background findings at ``low`` or
  ``info`` are counted apart (versions read as IP addresses and the like: allowed).
- **Time to detect**: from the line being written to the end of the cycle that stored the
  finding (scenario minutes; the drill's cycle is its resolution).
- **Incidents**: each expected PATTERN/VENDOR must be opened; time to open counts from the first
  planted record that names it. Incidents nobody expected are listed.
- **Notifications**: each webhook the receiver verified, in scenario time, set against every
  deadline of the regimes that apply to its incident (due − received).
- **Playbook steps missed**: steps of the incident's playbooks whose due time passed by the end
  of the drill and that are not done or skipped. A headless drill has no responder, so every
  step due within the drill is reported missed: that is the point of rehearsing it.
- **A drill stopped early** (Ctrl-C, ``q`` in the console) is scored on what was replayed before
  the stop (``run.json``'s ``replayed``: the lines written to each watched file): a plant on a
  line never written is *not replayed*, not missed, and an expected incident none of whose
  evidence was replayed is not counted against the drill. It does not pass.

The database is opened the way every leakwatch reader opens it (:meth:`Store.open`, read only),
so a damaged, foreign or locked ``drill.duckdb`` is a :class:`~leakwatch.errors.StoreError`.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.drills.scenarios import IncidentKey
from leakwatch.errors import UsageError

SEVERITIES = ("info", "low", "medium", "high", "critical")
MEDIUM = SEVERITIES.index("medium")


def _load_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: missing; is {p.parent} a drill folder ('leakwatch drill run … --out DIR')?") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: cannot read: {e}") from None


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def _minutes(td: timedelta) -> float:
    return round(td.total_seconds() / 60, 2)


def _stats(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(xs), 2), "max": round(max(xs), 2)}


def _key(s: str) -> IncidentKey:
    pattern, _, vendor = s.partition("/")
    return IncidentKey(pattern, vendor)


def _replay_filter(run: Mapping[str, Any]):
    """``(replayed(record), until_s)``: whether a manifest record's line was written before the
    drill stopped, and the scenario second the replay reached (None: the drill ran to its end)."""
    if not run.get("stopped_early"):
        return (lambda rec: True), None
    rp = run.get("replayed")
    if isinstance(rp, Mapping) and isinstance(rp.get("files"), Mapping):
        files = rp["files"]
        return (lambda rec: rec["line"] <= int(files.get(rec["file"], 0))), float(rp.get("until_s") or 0.0)
    # A run.json from before the drill recorded it: the last cycle is as far as the replay got.
    until = max((c["t"] for c in run.get("cycles") or []), default=0.0)
    return (lambda rec: rec["t"] <= until), until


def score_drill(drill_dir: str | Path) -> dict[str, Any]:
    """The score of the drill in ``drill_dir`` (see the module docstring), as a JSON-able dict.
    Raises :class:`UsageError` for a folder that is not a drill's, :class:`StoreError` for a
    database that cannot be opened."""
    from leakwatch.config import load_config
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import deadline_resolver, incident_clocks
    from leakwatch.incidents.playbooks import (
        load_playbooks,
        select_playbooks,
        settled_steps,
        step_applies,
        step_due,
    )
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.store import Store

    d = Path(drill_dir)
    manifest = _load_json(d / "source" / "manifest.json")
    run = _load_json(d / "run.json")
    db = d / "drill.duckdb"
    if not db.is_file():
        raise UsageError(f"{db}: missing; the drill did not get as far as its database")
    start, end = _dt(run["start"]), _dt(run["end"])
    logs = Path(run["logs_dir"])
    config = load_config(d / "leakwatch.toml", env={})
    regimes = load_regimes()
    playbooks = load_playbooks()
    cycles = run["cycles"]
    was_replayed, replayed_until = _replay_filter(run)

    def at_min(t: datetime) -> float:
        return _minutes(t - start)

    def stored_t(finding_id: int) -> float | None:
        for c in cycles:
            if c["max_finding_id"] is not None and c["max_finding_id"] >= finding_id:
                return c["t"]
        return None

    # Read only, no key needed (nothing is hashed): the same checks and messages as every reader.
    store = Store.open(db, read_only=True, need_key=False)
    con = store.con
    try:
        # -- detection ----------------------------------------------------------------------
        rows = con.execute("SELECT finding_id, source_path, line, start_byte, end_byte, entity, severity_rank "
                           "FROM findings ORDER BY finding_id").fetchall()
        by_line: dict[tuple[str, int], list[tuple]] = {}
        for fid, path, line, s, e, entity, rank in rows:
            try:
                rel = Path(path).resolve().relative_to(logs.resolve()).as_posix()
            except ValueError:
                rel = path
            by_line.setdefault((rel, int(line)), []).append((fid, int(s), int(e), entity, int(rank)))
        spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for p in manifest["plants"]:
            spans.setdefault((p["file"], p["line"]), []).append((p["start"], p["end"]))
        planted, missed, not_replayed, ttd = [], [], [], []
        by_entity: dict[str, dict[str, int]] = {}
        for p in manifest["plants"]:
            if not was_replayed(p):
                not_replayed.append({"file": p["file"], "line": p["line"], "entity": p["entity"],
                                     "minute": p["minute"]})
                continue
            hits = [f for f in by_line.get((p["file"], p["line"]), ())
                    if f[3] == p["entity"] and f[1] < p["end"] and p["start"] < f[2]]
            ent = by_entity.setdefault(p["entity"], {"planted": 0, "detected": 0})
            ent["planted"] += 1
            item = {"file": p["file"], "line": p["line"], "entity": p["entity"], "minute": p["minute"],
                    "detected": bool(hits)}
            if hits:
                ent["detected"] += 1
                t = stored_t(min(h[0] for h in hits))
                if t is not None:
                    item["time_to_detect_min"] = round((t - p["t"]) / 60, 2)
                    ttd.append(item["time_to_detect_min"])
            else:
                missed.append(item)
            planted.append(item)
        tp = fp = low_bg = 0
        fp_items: list[dict[str, Any]] = []
        for (rel, line), fs in by_line.items():
            sp = spans.get((rel, line), [])
            for fid, s, e, entity, rank in fs:
                on_plant = any(s < pe and ps < e for ps, pe in sp)
                if rank >= MEDIUM:
                    if on_plant:
                        tp += 1
                    else:
                        fp += 1
                        if len(fp_items) < 20:
                            fp_items.append({"file": rel, "line": line, "entity": entity,
                                             "severity": SEVERITIES[rank]})
                elif not on_plant:
                    low_bg += 1
        n_plants = len(planted)  # the replayed ones: what the tool had a chance to find
        detected = n_plants - len(missed)
        detection = {
            "planted": len(manifest["plants"]), "replayed": n_plants, "detected": detected,
            "recall": round(detected / n_plants, 4) if n_plants else None,
            "findings_medium_or_above": tp + fp, "true_positives": tp, "false_positives": fp,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "background_above_low": fp, "background_low_or_info": low_bg, "false_positive_examples": fp_items,
            "time_to_detect_min": _stats(ttd), "by_entity": dict(sorted(by_entity.items())), "missed": missed,
            "not_replayed": not_replayed,
        }

        # -- incidents ----------------------------------------------------------------------
        incs = con.execute("SELECT incident_id, title, group_key, severity, opened_at FROM incidents "
                           "WHERE merged_into IS NULL ORDER BY incident_id").fetchall()
        first_evidence: dict[str, float] = {}
        evidence_replayed: set[str] = set()
        for rec in [*manifest["plants"], *manifest["activity"]]:
            for k in rec.get("incidents") or []:
                first_evidence[k.casefold()] = min(first_evidence.get(k.casefold(), rec["t"]), rec["t"])
                if was_replayed(rec):
                    evidence_replayed.add(k.casefold())
        expected = [IncidentKey(x["pattern"], x["vendor"]) for x in manifest["expect"]["incidents"]]
        inc_info: dict[int, dict[str, Any]] = {}
        for iid, title, gk, sev, opened in incs:
            g = json.loads(gk) if gk else {}
            inc_info[iid] = {"incident_id": iid, "title": title, "severity": sev, "pattern": g.get("pattern"),
                             "vendor": g.get("dest_vendor"), "opened_at": opened.astimezone(UTC).isoformat(),
                             "opened_min": at_min(opened.astimezone(UTC))}
        exp_out, matched_ids = [], set()
        for k in expected:
            hits = [i for i in inc_info.values() if k.matches(i["pattern"], i["vendor"])]
            fe = first_evidence.get(str(k).casefold())
            item: dict[str, Any] = {"key": str(k), "opened": bool(hits), "incident_ids": [i["incident_id"] for i in hits],
                                    "first_evidence_min": round(fe / 60, 2) if fe is not None else None,
                                    "replayed": replayed_until is None or str(k).casefold() in evidence_replayed}
            if hits:
                first = min(hits, key=lambda i: i["opened_min"])
                item.update(opened_min=first["opened_min"], severity=first["severity"])
                if fe is not None:
                    item["time_to_open_min"] = round(first["opened_min"] - fe / 60, 2)
                matched_ids.update(item["incident_ids"])
            exp_out.append(item)
        unexpected = [{k: i[k] for k in ("incident_id", "title", "severity", "pattern", "vendor", "opened_min")}
                      for i in inc_info.values() if i["incident_id"] not in matched_ids]

        # -- regimes, deadlines, playbooks ---------------------------------------------------
        per_incident: dict[int, dict[str, Any]] = {}
        missed_steps, next_steps = [], []
        all_facts = book.build_facts_many(con, list(inc_info), config, regimes)
        for iid in inc_info:
            facts = all_facts[iid]
            clocks = incident_clocks(facts, regimes, end)
            deadlines = []
            applied = [rc.regime.id for rc in clocks if rc.applies is True]
            undecided = [rc.regime.id for rc in clocks if rc.applies is None]
            for rc in clocks:
                if rc.applies is not True:
                    continue
                for dl in rc.deadlines:
                    if dl.due is not None:
                        deadlines.append({"regime": rc.regime.id, "deadline": dl.id, "label": dl.label,
                                          "due": dl.due.isoformat(), "due_min": at_min(dl.due), "status": dl.status})
            aware = facts.clock_events.get("awareness")
            per_incident[iid] = {"applies": applied, "undecided": undecided, "deadlines": deadlines,
                                 "awareness_min": at_min(aware) if aware else None}
            states = book.step_states(con, iid)
            done = settled_steps(states)
            applies = {rc.regime.id: rc.applies for rc in clocks}
            resolve = deadline_resolver(facts, regimes, end)
            def regime_applies(rid: str, applies=applies) -> bool | None:
                return applies.get(rid)

            for pb in select_playbooks(playbooks, facts):
                for s in pb.steps:
                    st = states.get((pb.id, s.id))
                    state = st["status"] if st else "pending"
                    if state in ("done", "skipped") or step_applies(s, facts, done, regime_applies) is False:
                        continue
                    due = step_due(s, facts, resolve)
                    if due is None:
                        continue
                    row = {"incident_id": iid, "playbook": pb.id, "step": s.id, "title": s.title, "role": s.role,
                           "due": due.isoformat(), "due_min": at_min(due), "state": state}
                    if due <= end:
                        row["overdue_min"] = _minutes(end - due)
                        missed_steps.append(row)
                    else:
                        next_steps.append(row)
        expected_regimes = list(manifest["expect"].get("regimes") or [])
        relevant = [iid for iid in inc_info if iid in matched_ids] or list(inc_info)
        applied_all = sorted({r for iid in relevant for r in per_incident[iid]["applies"]})
        undecided_all = sorted({r for iid in relevant for r in per_incident[iid]["undecided"]} - set(applied_all))
        regimes_out = {"expected": expected_regimes, "applied": applied_all, "undecided": undecided_all,
                       "missing": [r for r in expected_regimes if r not in applied_all],
                       "unexpected": [r for r in applied_all if r not in expected_regimes],
                       "per_incident": {str(k): v for k, v in per_incident.items()}}
        next_steps.sort(key=lambda r: r["due_min"])

        # -- notifications ------------------------------------------------------------------
        items = []
        for dv in run["deliveries"]:
            got = _dt(dv["received_at"])
            item = {k: dv.get(k) for k in ("webhook_id", "event", "incident_id", "minute", "drill_marked", "verified")}
            iid = dv.get("incident_id")
            if iid in inc_info:
                item["after_open_min"] = round(dv["minute"] - inc_info[iid]["opened_min"], 2)
                item["deadlines"] = [{"regime": x["regime"], "deadline": x["deadline"], "label": x["label"],
                                      "due_min": x["due_min"], "margin_min": _minutes(_dt(x["due"]) - got),
                                      "in_time": _dt(x["due"]) >= got}
                                     for x in per_incident[iid]["deadlines"]]
            items.append(item)
        outbox = dict(con.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
        notified_incidents = sorted({i["incident_id"] for i in items if i.get("incident_id") is not None})
        notifications = {
            "received": len(items), "verified": sum(1 for i in items if i.get("verified")),
            "drill_marked": sum(1 for i in items if i.get("drill_marked")), "rejected": len(run.get("rejected") or []),
            "duplicates_absorbed": run.get("duplicates", 0), "incidents_notified": notified_incidents,
            "incidents_not_notified": [iid for iid in matched_ids if iid not in notified_incidents
                                       and SEVERITIES.index(inc_info[iid]["severity"]) >= MEDIUM],
            "items": items,
        }
    finally:
        store.close()
    stopped_early = bool(run.get("stopped_early", False))
    checks = {
        "recall_1": detection["recall"] == 1.0,
        "no_background_false_positive_above_low": detection["background_above_low"] == 0,
        "expected_incidents_opened": all(x["opened"] for x in exp_out if x["replayed"]),
        "notification_verified": notifications["verified"] > 0 and notifications["rejected"] == 0,
        "notifications_marked_drill": notifications["received"] == notifications["drill_marked"],
        "expected_regimes_apply": not regimes_out["missing"],
        "outbox_drained": bool(run.get("outbox_drained", True)) and not outbox.get("pending") and not outbox.get("sending"),
    }
    return {
        "drill": {"banner": run.get("banner"), "scenario": manifest["scenario"], "title": manifest.get("title"),
                  "seed": manifest["seed"], "speed": run.get("speed"), "start": run["start"], "end": run["end"],
                  "scenario_minutes": _minutes(end - start), "planned_minutes": manifest["minutes"],
                  "real_seconds": run.get("real_seconds"), "stopped_early": stopped_early,
                  "lines": sum(f["lines"] for f in manifest["files"]), "files": len(manifest["files"]),
                  "lines_replayed": _lines_replayed(run, manifest),
                  "replayed_until_min": round(replayed_until / 60, 2) if replayed_until is not None else None,
                  "cycles": len(cycles), "awareness_set": len(run.get("awareness") or [])},
        "detection": detection,
        "incidents": {"opened": len(inc_info), "expected": exp_out, "unexpected": unexpected},
        "notifications": notifications,
        "regimes": regimes_out,
        "playbooks": {"missed": missed_steps, "due_next": next_steps[:10],
                      "note": "a headless drill has no responder: steps due within it are missed by design"},
        "outbox": {k: int(v) for k, v in sorted(outbox.items())},
        "checks": checks,
        # A drill stopped early rehearsed only part of the scenario: it cannot pass.
        "passed": all(checks.values()) and not stopped_early,
        "notes": run.get("notes") or [],
    }


def _lines_replayed(run: Mapping[str, Any], manifest: Mapping[str, Any]) -> int:
    """How many lines the drill wrote to its watched files."""
    rp = run.get("replayed")
    if isinstance(rp, Mapping) and rp.get("lines") is not None:
        return int(rp["lines"])
    if run.get("stopped_early"):
        return sum(int(c.get("lines") or 0) for c in run.get("cycles") or [])
    return sum(f["lines"] for f in manifest["files"])


def _fmt_min(x: float | None) -> str:
    if x is None:
        return "—"
    sign = "-" if x < 0 else ""
    x = abs(x)
    if x >= 120:
        return f"{sign}{x / 60:.1f} h"
    return f"{sign}{x:.1f} min"


def render_markdown(score: Mapping[str, Any]) -> str:
    """``score.md``: the score as a responder reads it (masked facts only: no value appears)."""
    dr, de, inc, no, rg, pb = (score[k] for k in ("drill", "detection", "incidents", "notifications", "regimes",
                                                  "playbooks"))
    stopped = bool(dr.get("stopped_early"))
    until = dr.get("replayed_until_min")
    replayed = dr.get("lines_replayed", dr["lines"])
    lines = (f"{replayed:,} of {dr['lines']:,} lines replayed from {dr['files']} files"
             if stopped else f"{dr['lines']:,} lines in {dr['files']} files")
    out = [f"# DRILL score: {dr['scenario']}", "", f"> {dr.get('banner') or 'DRILL: synthetic data only'}", "",
           f"{dr.get('title') or ''}", "",
           f"Seed {dr['seed']}, speed {dr['speed']:g}x: {dr['scenario_minutes']:.1f} scenario minutes in "
           f"{dr['real_seconds'] or 0:.1f} s; {lines}, {dr['cycles']} watch cycles."
           + (f" **Stopped early** (replayed up to T+{until or 0:.1f} of {dr['planned_minutes']} minutes): only "
              "what was replayed is scored." if stopped else ""), "",
           f"**Result: {'PASSED' if score['passed'] else 'FAILED'}** — "
           + ", ".join(f"{k.replace('_', ' ')} {'yes' if v else 'NO'}" for k, v in score["checks"].items()), "",
           "## Detection", "",
           ("| planted | detected | recall | precision (medium+) | background > low | background low/info "
           "| time to detect (median / max) |"),
           "|---|---|---|---|---|---|---|",
           (f"| {_planted_cell(de)} | {de['detected']} | {de['recall']} | {de['precision']} | {de['background_above_low']} "
           f"| {de['background_low_or_info']} | {_fmt_min(de['time_to_detect_min']['median'])} / "
           f"{_fmt_min(de['time_to_detect_min']['max'])} |"), ""]
    out += [f"| entity | planted{' (replayed)' if de.get('not_replayed') else ''} | detected |", "|---|---|---|"]
    out += [f"| {e} | {v['planted']} | {v['detected']} |" for e, v in de["by_entity"].items()]
    if de["missed"]:
        out += ["", "Missed: " + "; ".join(f"{m['entity']} in {m['file']}:{m['line']} (T+{m['minute']:.1f})"
                                           for m in de["missed"])]
    if de.get("not_replayed"):
        out += ["", f"Not replayed (the drill stopped at T+{until or 0:.1f}): "
                + "; ".join(f"{m['entity']} in {m['file']}:{m['line']} (T+{m['minute']:.1f})" for m in de["not_replayed"])]
    if de["false_positive_examples"]:
        out += ["", "False positives above low: " + "; ".join(f"{f['entity']} ({f['severity']}) in {f['file']}:{f['line']}"
                                                          for f in de["false_positive_examples"])]
    out += ["", "## Incidents", "", ("| expected | opened | incident | severity | first evidence | opened at "
            "| time to open |"), "|---|---|---|---|---|---|---|"]
    for x in inc["expected"]:
        opened = "yes" if x["opened"] else ("**no**" if x.get("replayed", True) else "not replayed")
        out.append(f"| {x['key']} | {opened} | "
                   f"{', '.join('#' + str(i) for i in x['incident_ids']) or '—'} | {x.get('severity', '—')} | "
                   f"T+{_fmt_min(x['first_evidence_min'])} | "
                   f"{'T+' + _fmt_min(x.get('opened_min')) if x['opened'] else '—'} | {_fmt_min(x.get('time_to_open_min'))} |")
    if inc["unexpected"]:
        out += ["", "Not expected by the scenario: " + "; ".join(
            f"#{u['incident_id']} {u['title']} ({u['severity']}, {u['pattern']}/{u['vendor']})" for u in inc["unexpected"])]
    out += ["", "## Notifications (local receiver, signatures verified)", "",
            (f"{no['received']} received, {no['verified']} verified, {no['drill_marked']} marked as drill, "
            f"{no['rejected']} rejected, {no['duplicates_absorbed']} duplicates absorbed."), ""]
    if no["items"]:
        out += ["| received | event | incident | after opening | deadlines (regime: due, margin) |", "|---|---|---|---|---|"]
        for i in no["items"]:
            dls = "; ".join(f"{x['regime']} {x['deadline']}: T+{_fmt_min(x['due_min'])}, "
                            f"{'in time' if x['in_time'] else 'LATE'} by {_fmt_min(abs(x['margin_min']))}"
                            for x in i.get("deadlines") or []) or "—"
            out.append(f"| T+{_fmt_min(i['minute'])} | {i['event']} | {'#' + str(i['incident_id']) if i.get('incident_id') else '—'} "
                       f"| {_fmt_min(i.get('after_open_min'))} | {dls} |")
    if no["incidents_not_notified"]:
        out += ["", "Expected incidents without a notification: "
                + ", ".join(f"#{i}" for i in no["incidents_not_notified"])]
    out += ["", "## Regimes", "", f"Expected: {', '.join(rg['expected']) or '—'}; applied: {', '.join(rg['applied']) or '—'}"
            + (f"; **missing: {', '.join(rg['missing'])}**" if rg["missing"] else "")
            + (f"; also applied: {', '.join(rg['unexpected'])}" if rg["unexpected"] else "")
            + (f"; undecided until a responder records the facts they need: {', '.join(rg['undecided'])}"
               if rg.get("undecided") else ""), ""]
    out += ["## Playbook steps", "", f"_{pb['note']}._", ""]
    if pb["missed"]:
        out += ["| incident | playbook | step | role | due | overdue by |", "|---|---|---|---|---|---|"]
        out += [f"| #{m['incident_id']} | {m['playbook']} | {m['step']}: {m['title']} | {m['role']} | "
                f"T+{_fmt_min(m['due_min'])} | {_fmt_min(m['overdue_min'])} |" for m in pb["missed"]]
    else:
        out.append("No step fell due within the drill.")
    if pb["due_next"]:
        out += ["", "Next due: " + "; ".join(f"#{m['incident_id']} {m['step']} at T+{_fmt_min(m['due_min'])}"
                                             for m in pb["due_next"][:5])]
    if score.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in score["notes"]]
    return "\n".join(out) + "\n"


def _planted_cell(de: Mapping[str, Any]) -> str:
    """``7``, or ``3 of 7 replayed`` for a drill stopped early."""
    if de.get("not_replayed"):
        return f"{de.get('replayed', de['planted'])} of {de['planted']} replayed"
    return str(de["planted"])


def write_score(drill_dir: str | Path, score: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``score.json`` and ``score.md`` into the drill folder."""
    d = Path(drill_dir)
    pj, pm = d / "score.json", d / "score.md"
    pj.write_text(json.dumps(score, indent=1) + "\n", encoding="utf-8")
    pm.write_text(render_markdown(score), encoding="utf-8")
    return pj, pm
