"""Messages the console's workers and screens send each other.

Workers run in threads and never touch widgets: they post one of these (``post_message`` is
thread-safe) and the screen paints in its handler, on the event loop.
"""
from __future__ import annotations

from typing import Any

from textual.message import Message


class DataChanged(Message):
    """Something was written to the database (``what`` says what, in words): screens reload
    what they show, the header its nearest deadline."""

    def __init__(self, what: str = "") -> None:
        super().__init__()
        self.what = what


class IncidentsLoaded(Message):
    """The incidents list and the nearest deadline over all of them."""

    def __init__(self, rows: list, nearest: Any) -> None:
        super().__init__()
        self.rows = rows
        self.nearest = nearest


class IncidentLoaded(Message):
    """One incident's :class:`~leakwatch.tui.incident_model.IncidentView`."""

    def __init__(self, view: Any) -> None:
        super().__init__()
        self.view = view


class PlaybookLoaded(Message):
    """An incident's playbook steps (:class:`~leakwatch.tui.incident_model.StepRow`)."""

    def __init__(self, rows: list, title: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.title = title


class OutboxLoaded(Message):
    """The outbox rows and ``outbox_status`` totals."""

    def __init__(self, rows: list, status: dict) -> None:
        super().__init__()
        self.rows = rows
        self.status = status


class HistoryLoaded(Message):
    """The delivery history (audit rows) of one notification."""

    def __init__(self, notification_id: int, rows: list) -> None:
        super().__init__()
        self.notification_id = notification_id
        self.rows = rows


class LoadFailed(Message):
    """A read failed (database gone, locked by another writer, …); ``error`` is the message."""

    def __init__(self, what: str, error: str) -> None:
        super().__init__()
        self.what = what
        self.error = error


class SummaryToken(Message):
    """A checked piece of the local model's summary, as it streams."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class SummaryDone(Message):
    """The summary is finished (or cancelled, or the template was used): a
    :class:`leakwatch.llm.summarize.Summary`, or ``error`` when it could not be made."""

    def __init__(self, summary: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.summary = summary
        self.error = error


class NoticeRendered(Message):
    """A notice draft (:class:`~leakwatch.incidents.notices.NoticeDraft`), or the error that
    stopped it."""

    def __init__(self, draft: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.error = error
