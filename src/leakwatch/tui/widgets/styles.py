"""Rich styles for table cells from the theme's variables, so cells read in light and dark
themes alike (``text-success`` etc. are the colours Textual derives for text on the theme's
background; a fixed "yellow" is unreadable on a light one)."""
from __future__ import annotations

from collections.abc import Mapping


def semantic(v: Mapping[str, str] | None) -> dict[str, str]:
    """``good``, ``warn``, ``bad``, ``alarm`` (white on the error colour) and ``muted``."""
    v = v or {}
    return {
        "good": v.get("text-success", "green"),
        "warn": v.get("text-warning", "yellow"),
        "bad": v.get("text-error", "red"),
        "alarm": f"bold #ffffff on {v.get('error', 'red')}",
        "muted": "dim",
    }


def severity_style(severity: str, v: Mapping[str, str] | None = None) -> str:
    """critical: alarm; high: bold error colour; medium: warning colour; low/info: muted."""
    s = semantic(v)
    return {"critical": s["alarm"], "high": f"bold {s['bad']}", "medium": s["warn"], "low": "", "info": s["muted"]}.get(
        severity, "")


def state_style(state: str, v: Mapping[str, str] | None = None) -> str:
    """A playbook step's or a notification's state."""
    s = semantic(v)
    return {"done": s["good"], "delivered": s["good"], "skipped": s["muted"], "in_progress": f"bold {s['warn']}",
            "pending": s["warn"], "sending": s["warn"], "dead": f"bold {s['bad']}"}.get(state, "")
