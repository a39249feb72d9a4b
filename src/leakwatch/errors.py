"""Exceptions raised by leakwatch itself.

Library errors (DuckDB, RE2, HTTP, OS) are wrapped in one of these with ``raise ... from e``, so
the CLI can map each class to one exit code in one place and print a message a user can act on.
"""
from __future__ import annotations


class LeakwatchError(Exception):
    """Base of every error leakwatch raises on purpose; its message is meant for the user."""


class StoreError(LeakwatchError):
    """The findings database cannot be opened, migrated, read or written.

    The message names the database file and says what to do about it.
    """


class InputError(LeakwatchError):
    """An input cannot be read as expected: unreadable file, truncated archive, binary data, huge line."""


class RuleLoadError(LeakwatchError):
    """A rules file is invalid; the message names the file, and the line and field where known."""


class UsageError(LeakwatchError):
    """The command line or the configuration asks for something leakwatch cannot do."""


class SalesforceError(LeakwatchError):
    """Salesforce could not be reached, or answered with an error, after the retries.

    Messages never contain a session id, password or security token.
    """


class SalesforceAuthError(SalesforceError):
    """Salesforce refused the login or the session (401/403): the credentials must be fixed."""


class PlaybookError(LeakwatchError):
    """A regimes, playbook or notice-template file is invalid; the message names the file, and
    the line and field where known."""


class IncidentError(LeakwatchError):
    """An incident operation cannot be done as asked (no such incident, a status change that is
    not allowed, an awareness time before the first finding, …); nothing was changed."""


def format_problem(file: str, line: int | None, what: str, name: str | None, fld: str | None, message: str) -> str:
    """A data-file problem as every loader words it: ``file:line: <what> 'name': field 'x': message``
    (``what`` is the kind of item: ``step``, ``regime``, ``entry``; parts that are None are left out)."""
    parts = [file + (f":{line}" if line else "")]
    if name is not None:
        parts.append(f"{what} {name!r}")
    if fld is not None:
        parts.append(f"field {fld!r}")
    return ": ".join(parts) + ": " + message


# C0 and C1 control characters, DEL, and the bidirectional overrides and isolates that make a
# terminal show text in another order than it is ("Trojan Source" file names).
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_UNPRINTABLE |= {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_UNPRINTABLE_LINES = {c: v for c, v in _UNPRINTABLE.items() if c not in (0x0A, 0x09)}


def printable(text: object, *, lines: bool = False) -> str:
    """``text`` safe to print on a terminal: control characters (an ESC that clears the screen or
    retitles the window, from a hostile file name in the evidence) and bidirectional overrides
    are shown as ``\\x1b`` / ``\\u202e`` escapes. ``lines``: newlines and tabs stay, for
    messages of several lines."""
    return str(text).translate(_UNPRINTABLE_LINES if lines else _UNPRINTABLE)
