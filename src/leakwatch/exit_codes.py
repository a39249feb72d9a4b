"""Exit codes are public API: scripts and CI gates branch on them."""
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of every ``leakwatch`` command.

    When several apply, the highest-priority one wins: STORE_ERROR, then REMOTE_ERROR and
    INPUT_ERROR (the result is incomplete, so "no findings" cannot be promised), then FINDINGS.
    """

    OK = 0  #: finished; no finding at or above --fail-on
    FINDINGS = 1  #: finished; at least one finding at or above --fail-on
    INPUT_ERROR = 2  #: bad usage, or some input (file, line, rule) could not be read; the rest was done
    STORE_ERROR = 3  #: the database could not be opened or written
    REMOTE_ERROR = 4  #: a remote service (Salesforce) failed or could not be reached after retries; what was fetched is kept, a rerun resumes
    AUDIT_BROKEN = 5  #: ``leakwatch audit verify``: the audit trail's chain is broken (rows edited, removed or added)
    INTERNAL_ERROR = 70  #: a bug in leakwatch (EX_SOFTWARE); please report it with the traceback
    INTERRUPTED = 130  #: stopped with Ctrl-C, or the reader of our output went away; what was stored stays stored
