"""One incident: its facts, the regimes that apply with every deadline as a live countdown, the
audit trail, a summary drafted by the local model, and the responder's actions (acknowledge,
set awareness, merge, split, notice draft)."""
from __future__ import annotations

import threading
import time
from datetime import UTC
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, OptionList, Static
from textual.widgets.option_list import Option

from leakwatch.errors import LeakwatchError
from leakwatch.tui.messages import (
    IncidentLoaded,
    NoticeRendered,
    SummaryDone,
    SummaryToken,
)
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.screens.incidents import severity_text
from leakwatch.tui.widgets.countdown import countdown_text
from leakwatch.tui.widgets.forms import Field, FormModal, MarkdownModal
from leakwatch.tui.widgets.styles import semantic
from leakwatch.tui.widgets.tables import (
    cells,
    clip,
    column_width,
    fit_columns,
    plain,
    refresh_cell,
)

#: Summary tokens are painted at most this often (seconds): the model writes ~20-200 tokens/s,
#: one repaint per token would keep the event loop busy for nothing.
TOKEN_FLUSH_S = 0.25

SUMMARY_HINT = Text.assemble(
    "Press ", ("g", "bold"), " for a summary drafted by the local model from the facts above (nothing leaves "
    "this machine; every number is checked against the facts); ", ("x", "bold"), " stops it.")

#: Facts and clocks side by side from this many columns, else one above the other.
SIDE_BY_SIDE = 160
REGIME_COLUMNS = (("regime", "regime", 10), ("applies", "applies", 9), ("deadline", "deadline", 0),
                  ("due", "due", 27, 100), ("left", "left", 20))
AUDIT_COLUMNS = (("seq", "#", 4), ("at", "when", 27), ("actor", "who", 10), ("action", "what", 18),
                 ("detail", "detail", 0), ("reason", "why", 24, 110))


class IncidentScreen(LwScreen):
    """Incident ``incident_id``."""

    PALETTE_GROUP = "Incident"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("a", "ack", "Acknowledge"),
        Binding("w", "awareness", "Set awareness"),
        Binding("m", "merge", "Merge"),
        Binding("s", "split", "Split"),
        Binding("n", "notice", "Notice draft"),
        Binding("p", "playbook", "Playbook"),
        Binding("f", "findings", "Findings"),
        Binding("g", "summary", "Summary"),
        Binding("x", "cancel_summary", "Stop summary", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, incident_id: int) -> None:
        super().__init__()
        self.incident_id = int(incident_id)
        self.view = None
        self._summary_cancel: threading.Event | None = None
        self._summary_text = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="incident-body"):
            yield Static(f"incident #{self.incident_id} — loading…", id="incident-title", classes="screen-title")
            with Horizontal(id="incident-top"):
                yield Static("", id="incident-facts", classes="panel")
                with Vertical(id="incident-clocks", classes="panel"):
                    yield Label("Regulatory clocks", classes="panel-title")
                    yield DataTable(id="regimes", cursor_type="row", show_cursor=False)
            yield Label("Audit trail (latest last)", classes="section-title")
            yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
            yield Label("Summary", classes="section-title")
            yield Static(SUMMARY_HINT, id="summary", classes="panel")

    def on_mount(self) -> None:
        self._deadline_rows: list[tuple[str, object]] = []

    def on_screen_resume(self) -> None:
        if self.view is not None:
            self.app.active_incident = (self.incident_id, self.view.facts.title)

    def on_resize(self) -> None:
        width = self.size.width
        side = width >= SIDE_BY_SIDE
        self.query_one("#incident-top").set_class(not side, "-stacked")
        # Panels: a border and one cell of padding on each side.
        changed = fit_columns(self.query_one("#regimes", DataTable), REGIME_COLUMNS, "deadline",
                              (width // 2 if side else width) - 4)
        changed = fit_columns(self.query_one("#audit", DataTable), AUDIT_COLUMNS, "detail", width) or changed
        if changed and self.view is not None:
            self._paint_clocks(self.view)
            self._paint_audit(self.view)

    # -- loading ---------------------------------------------------------------------------------

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        from leakwatch.tui.incident_model import load_incident

        app = self.app
        self.post_loaded(f"incident #{self.incident_id}",
                         lambda cur: IncidentLoaded(load_incident(cur, self.incident_id, app.config, app.regimes, app.now())))

    def on_incident_loaded(self, message: IncidentLoaded) -> None:
        view = self.view = message.view
        f, inc = view.facts, view.incident
        self.app.active_incident = (self.incident_id, f.title)
        title = Text.assemble(f"#{self.incident_id} ", (f.title, "bold"), "  ", severity_text(f.severity, self.app.theme_variables),
                              "  ", (f.status, "bold"))
        if inc.get("merged_into"):
            title.append(f"  merged into #{inc['merged_into']}", style="italic")
        self.query_one("#incident-title", Static).update(title)
        self.query_one("#incident-facts", Static).update(self._facts_table(view))
        self._paint_clocks(view)
        self._paint_audit(view)

    def _facts_table(self, view) -> Group:
        f = view.facts
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()

        def row(label: str, value) -> None:
            # Literal text: Rich reads a str cell as markup, and facts, Salesforce fields and
            # examples hold what responders typed and logs carried.
            grid.add_row(label, plain(value))

        row("aware", self.fmt_time(f.awareness))
        row("detected", self.fmt_time(f.clock_events.get("detection")))
        for e, at in sorted(f.clock_events.items()):
            if e not in ("awareness", "detection"):
                row(e, self.fmt_time(at))
        row("in logs", f"{self.fmt_time(f.first_seen, short=True)} .. {self.fmt_time(f.last_seen, short=True)}")
        row("counts", f"{f.findings:,} findings · ~{f.records:,} records · ~{f.data_subjects:,} data subjects")
        row("categories", ", ".join(f.categories) or "—")
        row("entities", ", ".join(f.entities) or "—")
        if f.fields or f.objects:
            row("Salesforce", ", ".join(f.fields or f.objects))
        if f.patterns:
            row("patterns", ", ".join(f.patterns))
        row("subjects in", ", ".join(f.subject_jurisdictions) or "—")
        dests = Text()
        for i, d in enumerate(f.destinations):
            if i:
                dests.append("\n")
            dests.append(f"{d.vendor or '?'}")
            dests.append(f" · {d.region or '?'} ({d.jurisdiction or '?'})", style="dim")
            dests.append(f" · {d.data_subjects:,} subj." if d.data_subjects else "")
            if d.residency_violation:
                dests.append("  RESIDENCY VIOLATION", style=f"bold {semantic(self.app.theme_variables)['bad']}")
        row("destinations", dests if f.destinations else Text("—"))
        if f.masked_examples:
            row("examples", ", ".join(f.masked_examples))
        if f.responder:
            row("facts", "; ".join(f"{k}={v}" for k, v in sorted(f.responder.items())))
        return Group(Text("Facts", style="bold underline"), grid)

    def _paint_clocks(self, view) -> None:
        table = self.query_one("#regimes", DataTable)
        table.clear()
        if not getattr(table, "_lw_columns", None):
            return
        now = self.app.now()
        theme = self.app.theme_variables
        self._deadline_rows = []
        dw = column_width(table, "deadline")
        for rc in view.clocks:
            verdict = Text({True: "yes", None: "undecided", False: "no"}[rc.applies],
                           style={True: "bold", None: "italic", False: "dim"}[rc.applies])
            if not rc.deadlines:
                table.add_row(*cells(table, {"regime": rc.regime.id, "applies": verdict, "deadline": "—", "due": "",
                                             "left": ""}), key=f"{rc.regime.id}/")
                continue
            for i, d in enumerate(rc.deadlines):
                key = f"{rc.regime.id}/{d.id}"
                met = d.status == "met" or d.sent_at is not None
                due = self.fmt_time(d.due, short=True) if d.due else clip(d.basis, 26)
                left = (countdown_text(d.due, now, met=met, theme=theme) if d.due or met
                        else Text(d.status, style="dim"))
                table.add_row(*cells(table, {"regime": rc.regime.id if i == 0 else "", "applies": verdict if i == 0 else "",
                                             "deadline": clip(d.label, dw), "due": due, "left": left}), key=key)
                if d.due is not None:
                    self._deadline_rows.append((key, d))

    def _paint_audit(self, view) -> None:
        from leakwatch.tui.incident_model import audit_detail_text

        table = self.query_one("#audit", DataTable)
        table.clear()
        dw = column_width(table, "detail")
        for r in view.audit:
            table.add_row(*cells(table, {
                "seq": str(r["seq"]), "at": self.fmt_time(r["at"], short=True), "actor": clip(r["actor"], 10),
                "action": r["action"], "detail": audit_detail_text(r["detail"], dw), "reason": clip(r["reason"] or "", 24)}),
                key=str(r["seq"]))
        if table.row_count:
            table.move_cursor(row=table.row_count - 1)

    def tick(self) -> None:
        if not getattr(self, "_deadline_rows", None):
            return
        table = self.query_one("#regimes", DataTable)
        now = self.app.now()
        theme = self.app.theme_variables
        for key, d in self._deadline_rows:
            met = d.status == "met" or d.sent_at is not None
            refresh_cell(table, key, "left", countdown_text(d.due, now, met=met, theme=theme))

    # -- actions ---------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_playbook(self) -> None:
        self.app.open_playbook(self.incident_id)

    def action_findings(self) -> None:
        self.app.open_findings({"incident": self.incident_id})

    def action_ack(self) -> None:
        app, iid = self.app, self.incident_id

        def ack(store) -> str:
            from leakwatch.incidents import book

            book.acknowledge(store, iid, actor=app.actor, now=app.now())
            return f"incident #{iid} acknowledged (triaged) by {app.actor}"

        app.write(ack, f"acknowledge incident #{iid}")

    def action_awareness(self) -> None:
        app, iid = self.app, self.incident_id
        current = self.view.facts.awareness.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") if self.view else ""

        def submit(values) -> str:
            from leakwatch.tui.incident_model import set_awareness

            now = app.now()
            old = app.change(lambda store: set_awareness(
                store, iid, str(values["time"]), str(values["reason"]), actor=app.actor, config=app.config,
                regimes=app.regimes, now=now, accept_overdue=bool(values["accept"])))
            was = f" (was {old.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if old else ""
            return f"incident #{iid}: awareness set to {values['time']}{was}"

        self.app.push_screen(FormModal(
            f"Set the awareness time of incident #{iid}",
            [Field("time", "When the organisation became aware (ISO 8601; no zone = UTC)", current,
                   "2026-03-11T09:30Z", required=True),
             Field("reason", "How it was established (recorded in the audit trail)", "", "DPO confirmed …", required=True),
             Field("accept", "accept deadlines already past (the time is the truth)", "false", kind="check")],
            submit, intro="Every deadline counts from this time. Not before the first finding, not in the future.",
        ), self._notify_result)

    def action_merge(self) -> None:
        app, iid = self.app, self.incident_id

        def submit(values) -> str:
            from leakwatch.incidents import book
            from leakwatch.tui.incident_model import parse_ids

            sources = parse_ids(str(values["sources"]), "incidents to merge")
            if not sources:
                raise LeakwatchError("give the ids of the incidents to merge into this one")
            app.change(lambda store: book.merge(store, iid, sources, actor=app.actor,
                                                reason=str(values["reason"]) or None, now=app.now()))
            return f"merged {', '.join(f'#{s}' for s in sources)} into incident #{iid}"

        self.app.push_screen(FormModal(
            f"Merge incidents into #{iid}",
            [Field("sources", "Incidents to merge into this one (ids)", "", "5, 7", required=True),
             Field("reason", "Why", "", "same root cause")],
            submit, intro="Their findings, alerts, notices and steps move here; the earliest awareness wins.",
            submit_label="Merge"), self._notify_result)

    def action_split(self) -> None:
        app, iid = self.app, self.incident_id

        def submit(values) -> str:
            from leakwatch.incidents import book
            from leakwatch.tui.incident_model import parse_ids, parse_where

            where = parse_where(str(values["where"]))
            ids = parse_ids(str(values["findings"]), "findings")
            new = app.change(lambda store: book.split(
                store, iid, title=str(values["title"]), finding_ids=ids, where=where, actor=app.actor,
                reason=str(values["reason"]) or None, now=app.now()))
            return f"split incident #{iid}: new incident #{new}"

        self.app.push_screen(FormModal(
            f"Split incident #{iid}",
            [Field("where", "Findings where FIELD=VALUE (dest_vendor, dest_region, entity, source_path, format, rule_id)",
                   "", "dest_vendor=Anthropic"),
             Field("findings", "…or finding ids", "", "12, 13"),
             Field("title", "Title of the new incident", "", "Anthropic part", required=True),
             Field("reason", "Why", "")],
            submit, submit_label="Split"), self._notify_result)

    def _notify_result(self, result: str | None) -> None:
        if result:
            self.notify(result)

    # -- notice drafts ---------------------------------------------------------------------------

    def action_notice(self) -> None:
        if self.view is None:
            return
        regimes = self.view.notice_regimes
        if not regimes:
            self.notify("no regime applies to this incident: no notice to draft", severity="warning")
            return
        self.app.push_screen(ChooseRegime(regimes), self._draft)

    def _draft(self, regime_id: str | None) -> None:
        if not regime_id:
            return
        modal = MarkdownModal(f"Notice draft: {regime_id} — incident #{self.incident_id}", None)
        self._notice_modal = modal
        self.app.push_screen(modal)
        self._render_notice(regime_id)

    @work(thread=True, exclusive=True, group="notice")
    def _render_notice(self, regime_id: str) -> None:
        from leakwatch.tui.incident_model import render_draft

        app = self.app
        cur = app.cursor()
        try:
            draft = render_draft(cur, self.incident_id, regime_id, app.config, app.regimes, app.now())
        except LeakwatchError as e:
            self.post_message(NoticeRendered(error=str(e)))
            return
        finally:
            cur.close()
        self.post_message(NoticeRendered(draft))

    async def on_notice_rendered(self, message: NoticeRendered) -> None:
        modal = getattr(self, "_notice_modal", None)
        if modal is None or not modal.is_attached:
            return
        if message.error:
            await modal.show(f"**The draft could not be rendered.**\n\n{message.error}")
            return
        d = message.draft
        foot = (f"{len(d.missing)} required item(s) still unknown: {', '.join(d.missing)} — record them as facts"
                if d.missing else "every required item is known")
        await modal.show(d.text, foot + " · 'leakwatch notice ID --regime R --out FILE' writes it to a file")

    # -- summary (local model) ------------------------------------------------------------------------

    def action_summary(self) -> None:
        if self.view is None:
            return
        if self._summary_cancel is not None and not self._summary_cancel.is_set():
            self.notify("a summary is being written; x stops it")
            return
        self._summary_cancel = threading.Event()
        self._summary_text = ""
        self.query_one("#summary", Static).update(Text("drafting… (x stops)", style="italic"))
        self._summarise(self.view.facts, self.view.clocks, self._summary_cancel)

    def action_cancel_summary(self) -> None:
        if self._summary_cancel is not None:
            self._summary_cancel.set()

    @work(thread=True, exclusive=True, group="summary")
    def _summarise(self, facts, clocks, cancel: threading.Event) -> None:
        try:
            from leakwatch.llm.summarize import stream_summary
        except ImportError as e:  # pragma: no cover - shipped with leakwatch
            self.post_message(SummaryDone(error=f"summaries are not available: {e}"))
            return
        buf: list[str] = []
        last = [time.monotonic()]

        def on_token(piece: str) -> None:
            buf.append(piece)
            if time.monotonic() - last[0] >= TOKEN_FLUSH_S:
                self.post_message(SummaryToken("".join(buf)))
                buf.clear()
                last[0] = time.monotonic()

        try:
            summary = stream_summary(facts, self.app.config, kind="responder", clocks=clocks, now=self.app.now(),
                                     cancel=cancel, on_token=on_token)
        except (LeakwatchError, ValueError) as e:
            self.post_message(SummaryDone(error=str(e)))
            return
        if buf:
            self.post_message(SummaryToken("".join(buf)))
        self.post_message(SummaryDone(summary))

    def on_summary_token(self, message: SummaryToken) -> None:
        self._summary_text += message.text
        self.query_one("#summary", Static).update(Text(self._summary_text + " ▌"))

    def on_summary_done(self, message: SummaryDone) -> None:
        if self._summary_cancel is not None:
            self._summary_cancel.set()
        box = self.query_one("#summary", Static)
        if message.error:
            box.update(Text(message.error, style=f"bold {semantic(self.app.theme_variables)['bad']}"))
            return
        s = message.summary
        sem = semantic(self.app.theme_variables)
        style = {"VERIFIED": f"bold {sem['good']}", "UNVERIFIED": f"bold {sem['warn']}", "TEMPLATE": "bold"}[s.label]
        out = Text.assemble((s.label, style), "  ", s.best_text)
        if s.used_model and not s.verified and s.text:
            out.append("\n\nmodel text (not verified): ", style="dim")
            out.append(s.text, style="dim")
        for p in s.problems[:4]:
            out.append(f"\n· {p}", style="dim")
        if s.used_model:
            out.append(f"\n{s.model} on {s.backend} · {s.tokens} tokens"
                       + (f" · {s.tokens_per_s:.0f} tok/s" if s.tokens_per_s else ""), style="dim")
        box.update(out)


class ChooseRegime(ModalScreen[str | None]):
    """Pick the regime to draft a notice for (enter picks, escape cancels)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, regimes: list[str]) -> None:
        super().__init__(classes="lw-modal")
        self.regime_ids = regimes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Draft a notice for which regime?", id="dialog-title")
            yield OptionList(*[Option(r, id=r) for r in self.regime_ids], id="regime-choice")
            yield Static("enter picks · escape cancels", id="dialog-intro")

    def on_mount(self) -> None:
        self.query_one("#regime-choice", OptionList).focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
