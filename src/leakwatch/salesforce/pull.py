"""Incremental pull of Salesforce EventLogFile blobs to disk, then a scan of what arrived.

One run:

1. logs in (session id + instance URL, or username/password/security token: :class:`Credentials`);
2. learns the org's custom object key prefixes from describeGlobal (for record-id findings);
3. lists EventLogFile records created since the checkpoint (``CreatedDate >=`` the checkpoint,
   ``ORDER BY CreatedDate, Id``, all ``queryMore`` pages), skipping ids already stored;
4. streams each ``LogFile`` blob to ``<out>/<host>/<EventType>/<LogDate>_<Id>.csv.part`` in
   1 MiB chunks (a blob is never held in memory), fsyncs, renames it to ``.csv`` and records
   size and SHA-256 in ``pulled_files``; an interrupted ``.part`` is resumed with an HTTP
   ``Range`` request next time (restarted when the server ignores the range);
5. advances the checkpoint (``pull_checkpoints``) past files that are fully stored, in
   ``CreatedDate`` order, and never past one that failed;
6. scans every stored, not yet scanned file with :func:`leakwatch.pipeline.scan_paths`.

Why ``>=`` and not ``>``: several files can share one ``CreatedDate`` (hourly files of several
event types land in the same second), and a run can stop between two of them. Re-listing the
checkpoint's own second costs a few records, which are skipped by id; ``>`` would lose the rest
of that second for good.

Why a run stops at its first failed file (after the retries): the checkpoint may only move past
files that are stored, so files after a failure could be downloaded but not checkpointed, and a
server that fails one download after retries is likely to fail the next ones too. The next run
re-lists from the checkpoint, skips what is stored and resumes the partial file.

Secrets (session id, password, security token) are only held in :class:`Credentials` and the
HTTP client; every message that may carry server text passes through :meth:`Credentials.redact`,
and nothing of them is written to the database.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from leakwatch.errors import (
    InputError,
    SalesforceAuthError,
    SalesforceError,
    UsageError,
)
from leakwatch.threads import DaemonPool

if TYPE_CHECKING:
    import requests

    from leakwatch.pipeline import ScanSummary
    from leakwatch.store import Store

DEFAULT_API_VERSION: Final = "60.0"
DEFAULT_SINCE: Final = dt.timedelta(days=7)
# 1 MiB writes: large enough that per-chunk Python overhead is noise (~1 µs per call against
# ~1 ms of network time per MiB at 1 Gbit/s), small enough to bound memory per worker.
CHUNK_BYTES: Final = 1 << 20
# A blob is read (and appended to its .part) this much at a time: what a dropped connection
# loses, and so the least progress a flaky link must make between drops to ever finish.
READ_BYTES: Final = 64 << 10
# (connect, read) timeouts in seconds. A read timeout is the longest silence between two
# chunks, not the whole download; Salesforce starts streaming large blobs within seconds.
TIMEOUT: Final = (15.0, 120.0)
RETRIES: Final = 4  # after the first attempt: 5 tries over ~15 s with the default backoff
BACKOFF_S: Final = 1.0  # doubled per retry (1, 2, 4, 8 s), capped at MAX_BACKOFF_S
MAX_BACKOFF_S: Final = 30.0
ELF_FIELDS: Final = ("Id", "EventType", "LogDate", "CreatedDate", "Interval", "Sequence", "LogFileLength")

ENV_SESSION = ("SF_SESSION_ID", "SF_INSTANCE_URL")
ENV_PASSWORD = ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN")

_EVENT_TYPE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}\Z")  # \Z: "$" let a trailing newline through
_ID_RE: Final = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_VERSION_RE: Final = re.compile(r"\d{2,3}\.\d\Z")


# ---------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to log in; built from the environment by :meth:`from_env`. Its ``repr`` shows which
    variables are set, never their values."""

    session_id: str | None = None
    instance_url: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    domain: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """Read ``SF_SESSION_ID`` + ``SF_INSTANCE_URL``, or ``SF_USERNAME`` + ``SF_PASSWORD``
        (+ ``SF_SECURITY_TOKEN``, empty when the login IP is trusted), and ``SF_DOMAIN``.

        A session id wins when both sets are present. Raises :class:`UsageError` naming the
        missing variables (never their values)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            v = env.get(name)
            return v.strip() if v is not None and v.strip() else None

        sid, inst = get("SF_SESSION_ID"), get("SF_INSTANCE_URL")
        user, pw = get("SF_USERNAME"), get("SF_PASSWORD")
        token = env.get("SF_SECURITY_TOKEN")
        domain = get("SF_DOMAIN")
        # An SF_INSTANCE_URL left over from an earlier session does not turn a password login
        # into a session login: only SF_SESSION_ID does.
        if sid or (inst and not (user or pw)):
            if not (sid and inst):
                missing = "SF_INSTANCE_URL" if sid else "SF_SESSION_ID"
                raise UsageError(f"{missing} is not set: a session login needs both SF_SESSION_ID and SF_INSTANCE_URL")
            if not _SESSION_ID_RE.fullmatch(sid):
                # A token wrapped or quoted when pasted: it would be refused (or worse, echoed
                # in a library's error about the header); its value is not shown here either.
                raise UsageError("SF_SESSION_ID holds a space, a line break, a quote or a non-ASCII character "
                                 "(was it wrapped or quoted when pasted?): set it to the session id alone")
            return cls(session_id=sid, instance_url=normalize_instance_url(inst), domain=domain)
        if user or pw:
            missing = [n for n, v in (("SF_USERNAME", user), ("SF_PASSWORD", pw)) if not v]
            if token is None:
                missing.append("SF_SECURITY_TOKEN")
            if missing:
                raise UsageError(f"{', '.join(missing)} not set: a password login needs SF_USERNAME, SF_PASSWORD "
                                 f"and SF_SECURITY_TOKEN (set it empty if the login IP is trusted)")
            return cls(username=user, password=pw, security_token=token.strip(), domain=domain)
        raise UsageError("no Salesforce credentials: set SF_SESSION_ID and SF_INSTANCE_URL, or SF_USERNAME, "
                         "SF_PASSWORD and SF_SECURITY_TOKEN (see 'leakwatch pull --help')")

    @property
    def kind(self) -> str:
        """``session`` or ``password``."""
        return "session" if self.session_id else "password"

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be shown (non-empty ones only)."""
        return tuple(s for s in (self.session_id, self.password, self.security_token,
                                 (self.password or "") + (self.security_token or "")) if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret (and a session id's token part) replaced by ``***``, also
        as a library may print it: escaped (``repr``) or cut at whitespace into pieces."""
        variants: set[str] = set()
        for s in self.secrets():
            for v in (s, s.encode("unicode_escape").decode("ascii"), repr(s)[1:-1]):
                variants.add(v)
                if "!" in v:  # a session id is "<org id>!<token>": the token alone is the secret
                    variants.add(v.split("!", 1)[1])
            for piece in re.split(r"\s+", s):
                token = piece.split("!", 1)[-1]
                variants.update(v for v in (piece, token) if len(v) >= 8)
        for v in sorted(variants, key=len, reverse=True):
            if v:
                text = text.replace(v, "***")
        return text

    def __repr__(self) -> str:
        if self.session_id:
            return f"Credentials(session for {self.instance_url})"
        return f"Credentials(password login for {self.username!r}, domain {self.domain or 'login'!r})"


# What a session id is made of: "<org id>!<token>", the token URL-safe base64 and dots.
_SESSION_ID_RE = re.compile(r"[\x21\x23-\x26\x28-\x7e]+")


def normalize_instance_url(url: str) -> str:
    """``https://host[:port]`` from an instance URL or bare host; other schemes are refused
    (simple-salesforce talks https only, and a session id must not travel in clear)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if scheme.lower() != "https":
        raise UsageError(f"SF_INSTANCE_URL must be an https:// URL such as https://acme.my.salesforce.com "
                         f"(got a {scheme}:// URL)")
    if not host or "@" in host:
        raise UsageError("SF_INSTANCE_URL must be an https:// URL with a host name and nothing before it")
    return f"https://{host}"


def login_url(domain: str | None) -> str:
    """Base URL of the login service for ``SF_DOMAIN``: ``login`` (default) and ``test`` (a
    sandbox) and My Domain prefixes such as ``acme.my`` → ``https://<domain>.salesforce.com``;
    a host name ending in ``salesforce.com`` or a full ``https://host[:port]`` URL is used as is."""
    d = (domain or "login").strip().rstrip("/")
    if "://" in d:
        if not d.lower().startswith("https://"):
            raise UsageError("SF_DOMAIN must be login, test, a My Domain name or an https:// URL (passwords are "
                             "never sent over plain http)")
        return d
    if d.endswith((".salesforce.com", ".force.com")):
        return f"https://{d}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", d):
        raise UsageError(f"SF_DOMAIN {d!r} is not a domain name: use login, test, acme.my or an https:// URL")
    return f"https://{d}.salesforce.com"


# ---------------------------------------------------------------------------------------------
# Client


# Login faults that say the service is in trouble, not that the credentials are wrong.
_LOGIN_SERVER_FAULTS = frozenset({"SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "REQUEST_LIMIT_EXCEEDED"})


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, dropped connection, timeout)."""


class _Permanent(Exception):
    """A failure retrying will not fix (4xx other than 401/403/429, a blob longer than stated)."""


class SalesforceClient:
    """simple-salesforce with retries for idempotent GETs, re-login on an expired session
    (password logins), streamed blob downloads, and error messages without secrets.

    ``session`` is the ``requests.Session`` to use (default: a new one, which honours
    ``REQUESTS_CA_BUNDLE`` and proxy variables). ``sleep`` is injected so tests need not wait.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_version: str = DEFAULT_API_VERSION,
        session: requests.Session | None = None,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        if not _VERSION_RE.match(api_version):
            raise UsageError(f"--api-version {api_version!r} is not a Salesforce API version such as 60.0")
        import requests

        self.credentials = credentials
        self.api_version = api_version
        self.session = session or requests.Session()
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.timeout = timeout
        self._sf: Any = None
        self._login_lock = threading.Lock()
        self._generation = 0

    # -- session -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Log in (password) or wrap the given session; raises :class:`SalesforceAuthError` or
        :class:`SalesforceError`."""
        from simple_salesforce import Salesforce

        c = self.credentials
        if c.session_id:
            self._sf = Salesforce(session_id=c.session_id, instance_url=c.instance_url, session=self.session,
                                  version=self.api_version)
            return
        sid, instance = self._retry("log in", self._soap_login)
        self._sf = Salesforce(session_id=sid, instance=instance, session=self.session, version=self.api_version)

    def _soap_login(self) -> tuple[str, str]:
        import requests
        from simple_salesforce import SalesforceLogin
        from simple_salesforce.exceptions import SalesforceAuthenticationFailed

        c = self.credentials
        url = login_url(c.domain)
        try:
            return SalesforceLogin(username=c.username, password=c.password, security_token=c.security_token,
                                   sf_version=self.api_version, session=self.session, scratch_url=url)
        except SalesforceAuthenticationFailed as e:
            code = getattr(e, "code", None)
            if isinstance(code, int) and (code >= 500 or code == 429):
                raise _Transient(f"the login service answered {code}") from None
            if code is None or code in _LOGIN_SERVER_FAULTS:
                # No login fault at all (a maintenance page that parses as XML) or the server's
                # own trouble: the credentials were never judged; retry, then exit 4.
                raise _Transient(f"the login service is not answering logins ({code or 'no login fault'})") from None
            code_text = code if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,60}", code) else "refused"
            detail = c.redact(str(getattr(e, "auth_message", "") or ""))[:200]
            raise SalesforceAuthError(
                f"Salesforce refused the login at {url} ({code_text}{': ' + detail if detail else ''}): check "
                f"SF_USERNAME / SF_PASSWORD / SF_SECURITY_TOKEN, and SF_DOMAIN (test for a sandbox, or the "
                f"org's My Domain)"
            ) from None
        except requests.RequestException as e:
            err = _classify(e)
            if isinstance(err, _Transient):
                raise _Transient(f"cannot reach {url}: {err}") from None
            raise self._redacted(err) from None
        except OSError as e:
            raise _local_tls_error(e) from None

    def _relogin(self, generation: int) -> bool:
        """Log in again after a 401 (password logins only); False when that is not possible.

        ``generation`` is what the caller saw before its request, so that threads which all hit
        the same expired session log in once."""
        if self.credentials.kind != "password":
            return False
        with self._login_lock:
            if self._generation == generation:
                self.connect()
                self._generation += 1
        return True

    @property
    def sf(self) -> Any:
        """The simple-salesforce client (after :meth:`connect`)."""
        if self._sf is None:
            raise RuntimeError("connect() first")
        return self._sf

    @property
    def instance_url(self) -> str:
        """``https://host[:port]`` of the instance the session belongs to."""
        return f"https://{self.sf.sf_instance}"

    # -- retries -------------------------------------------------------------------------------

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` with retries on transient failures; map errors to leakwatch's."""
        import requests
        from simple_salesforce.exceptions import SalesforceError as SfError

        attempt = 0
        relogged = False
        while True:
            generation = self._generation
            try:
                return fn()
            except _Transient as e:
                reason = str(e)
            except requests.RequestException as e:
                err = _classify(e)
                if not isinstance(err, _Transient):
                    raise self._redacted(err) from None
                reason = str(err)
            except OSError as e:
                raise _local_tls_error(e) from None
            except ValueError:
                # A 200 that is not JSON: a captive portal or proxy page, not Salesforce.
                raise SalesforceError(f"Salesforce could not {what}: the answer was not JSON (is the instance URL "
                                      f"right, or is a proxy in the way?)") from None
            except SfError as e:
                status = getattr(e, "status", 0) or 0
                if status == 401 and not relogged and self._relogin(generation):
                    relogged = True
                    continue
                if status in (401, 403):
                    raise _auth_error(status, self.credentials) from None
                if not (status >= 500 or status == 429):
                    raise SalesforceError(self.credentials.redact(
                        f"Salesforce could not {what}: HTTP {status} {_sf_error_text(e.content)}")) from None
                reason = f"HTTP {status}"
            if attempt >= self.retries:
                raise SalesforceError(self.credentials.redact(
                    f"Salesforce could not {what} after {_tries(attempt + 1)}: {reason}")) from None
            self.sleep(self._backoff(attempt))
            attempt += 1

    def _redacted(self, err: Exception) -> Exception:
        """``err`` with the credentials taken out of its message (a library's error may quote a
        header that holds the session id)."""
        text = str(err)
        clean = self.credentials.redact(text)
        if clean == text:
            return err
        return UsageError(clean) if isinstance(err, UsageError) else type(err)(clean)

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), MAX_BACKOFF_S)
        return min(self.backoff_s * (2 ** attempt), MAX_BACKOFF_S)

    # -- API -----------------------------------------------------------------------------------

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        """All records of ``soql``, following ``nextRecordsUrl`` page by page (each page retried
        on its own, so a failure on page 40 does not restart the listing)."""
        page = self._retry("list EventLogFile records", lambda: self.sf.query(soql, timeout=self.timeout))
        records = list(page.get("records", []))
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = self._retry("list EventLogFile records (queryMore)",
                               lambda nxt=page["nextRecordsUrl"]: self.sf.query_more(
                                   nxt, identifier_is_url=True, timeout=self.timeout))
            records.extend(page.get("records", []))
        for r in records:
            r.pop("attributes", None)
        return records

    def describe_global(self) -> dict[str, Any]:
        """describeGlobal: every object with its ``keyPrefix`` and ``custom`` flag."""
        return self._retry("describe the org's objects", lambda: self.sf.describe(timeout=self.timeout)) or {}

    def download(self, log_id: str, dest: Path, *, expected: int | None = None,
                 on_bytes: Callable[[int], None] | None = None,
                 cancel: threading.Event | None = None) -> DownloadResult:
        """Stream the ``LogFile`` blob of ``log_id`` to ``dest`` (via ``dest + '.part'``).

        Resumes an existing ``.part`` with ``Range``, retries transient failures (each retry
        resumes too), checks the size against ``expected`` (``LogFileLength``), fsyncs and
        renames. Raises :class:`SalesforceAuthError`, or :class:`SalesforceError` when the
        file could not be stored; the ``.part`` stays for the next run."""
        if not _ID_RE.match(log_id):
            raise SalesforceError(f"EventLogFile id {log_id!r} is not a Salesforce id; not downloaded")
        part = dest.with_name(dest.name + ".part")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{dest.parent}: cannot create the download directory: {e.strerror or e}") from None
        attempt = 0
        relogged = False
        resumed_from = 0
        while True:
            generation = self._generation
            try:
                offset = self._fetch_once(log_id, part, expected, on_bytes, cancel)
                resumed_from = resumed_from or offset
                break
            except _NeedsRelogin:
                if not relogged and self._relogin(generation):
                    relogged = True
                    continue
                raise _auth_error(401, self.credentials) from None
            except _Permanent as e:
                raise PermanentDownloadError(self.credentials.redact(str(e))) from None
            except SalesforceError as e:
                raise self._redacted(e) from None
            except _Transient as e:
                if attempt >= self.retries:
                    raise SalesforceError(self.credentials.redact(
                        f"download failed after {_tries(attempt + 1)}: {e}")) from None
                delay = self._backoff(attempt, getattr(e, "retry_after", None))
                if cancel is not None and self.sleep is time.sleep:
                    stopped = cancel.wait(delay)  # Ctrl-C ends the wait
                else:
                    self.sleep(delay)
                    stopped = cancel is not None and cancel.is_set()
                if stopped:
                    raise KeyboardInterrupt from None  # no retry after Ctrl-C
                attempt += 1
        size, digest = _finish(part, dest)
        return DownloadResult(dest, size, digest, resumed_from)

    def _fetch_once(self, log_id: str, part: Path, expected: int | None,
                    on_bytes: Callable[[int], None] | None, cancel: threading.Event | None) -> int:
        """One GET of the blob, appended to ``part``; returns the offset it resumed from.
        Raises _Transient / _Permanent / _NeedsRelogin."""
        import requests

        have = part.stat().st_size if part.exists() else 0
        if expected is not None and have > expected:
            have = _truncate(part)  # longer than the file can be: not ours to trust
        if expected is not None and have == expected and have > 0:
            return have  # complete already (the run died between the last write and the rename)
        url = f"{self.sf.base_url}sobjects/EventLogFile/{log_id}/LogFile"
        # identity: a Range offset counts bytes of the file, not of a gzip stream of it.
        headers = {**self.sf.headers, "Accept-Encoding": "identity", "Accept": "text/csv, */*"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.RequestException as e:
            raise _classify(e) from None
        except ValueError as e:
            # A header value requests refuses (a session id with a control character): a
            # credentials problem, described without the value.
            raise UsageError(f"the request headers could not be sent ({type(e).__name__}): check SF_SESSION_ID "
                             f"for stray characters") from None
        except OSError as e:
            raise _local_tls_error(e) from None
        with resp:
            status = resp.status_code
            if status == 401:
                raise _NeedsRelogin
            if status == 403:
                raise _auth_error(403, self.credentials)
            if status == 416 and have:
                _truncate(part)
                raise _Transient("the server refused to resume (416); restarting the file")
            if status == 429 or status >= 500:
                err = _Transient(f"HTTP {status}")
                err.retry_after = resp.headers.get("Retry-After")  # type: ignore[attr-defined]
                raise err
            if status == 404:
                raise _Permanent("Salesforce has no such log file any more (404); it may have passed its retention")
            if status not in (200, 206):
                raise _Permanent(f"unexpected HTTP {status} {_sf_error_text(resp.content[:2000])}")
            offset = 0
            if status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if m is None or int(m.group(1)) != have:
                    _truncate(part)
                    raise _Transient("the server answered the wrong range; restarting the file")
                offset = have
            # 200: the server ignored Range (or there was none): start again from byte 0.
            mode = "ab" if offset else "wb"
            written = offset
            try:
                # 0600: the logs hold customer data (the CLI's umask does the same for directories).
                with open(part, mode, opener=_private_opener) as f:
                    for chunk in resp.iter_content(READ_BYTES):
                        if cancel is not None and cancel.is_set():
                            raise KeyboardInterrupt
                        f.write(chunk)
                        written += len(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                        if expected is not None and written > expected:
                            raise _Permanent(f"the server sent more than LogFileLength ({expected:,} bytes); "
                                             f"the partial file is kept as {part.name}")
                    f.flush()
                    os.fsync(f.fileno())
            except requests.RequestException as e:
                err = _classify(e)
                if isinstance(err, _Transient):
                    raise _Transient(f"connection lost after {written:,} bytes: {err}") from None
                raise err from None
            except OSError as e:  # our side: a full disk, a removed directory
                raise UsageError(f"{part}: cannot write the download: {e.strerror or e}") from None
            if expected is not None and written < expected:
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and offset + int(length) == written:
                    # The server sent the whole body it announced, and it is shorter than
                    # LogFileLength: no retry changes that.
                    raise _Permanent(f"the server sent {written:,} bytes but LogFileLength is {expected:,} "
                                     f"(a size mismatch, not a dropped connection)")
                raise _Transient(f"got {written:,} of {expected:,} bytes")
            return offset


class PermanentDownloadError(SalesforceError):
    """A log file that no retry will store (gone: 404; a size that does not match its
    LogFileLength). The run skips it (status ``skipped``) and goes on; the checkpoint may pass it."""


class _NeedsRelogin(Exception):
    """The blob GET was answered 401."""


@dataclass
class DownloadResult:
    """A blob stored on disk."""

    path: Path
    size: int
    sha256: str
    resumed_from: int  # byte offset a Range request resumed from (0: downloaded whole)


def _auth_error(status: int, creds: Credentials) -> SalesforceAuthError:
    if status == 401:
        what = "SF_SESSION_ID / SF_INSTANCE_URL" if creds.kind == "session" else \
            "SF_USERNAME / SF_PASSWORD / SF_SECURITY_TOKEN"
        return SalesforceAuthError(f"Salesforce refused the session (401): check {what} / credentials "
                                   f"(a session id expires; log in again for a new one)")
    return SalesforceAuthError("Salesforce refused the request (403): the user needs the 'API Enabled' and "
                               "'View Event Log Files' permissions, or the org's daily API limit is used up")


def _sf_error_text(content: Any) -> str:
    """The errorCode/message pairs of a Salesforce JSON error body, shortened."""
    if isinstance(content, (bytes, bytearray)):
        import json

        try:
            content = json.loads(content)
        except ValueError:
            content = content.decode("utf-8", "replace")
    if isinstance(content, list):
        content = "; ".join(f"{c.get('errorCode', '')}: {c.get('message', '')}" for c in content if isinstance(c, dict))
    return str(content)[:300]


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def _short(e: BaseException) -> str:
    """A one-line reason for a requests/urllib3 exception (their text nests three levels deep
    and repeats itself)."""
    text = str(e)
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the server closed the connection before the end of the response"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without answering"
    if "timed out" in text.lower():
        return "timed out"
    for pat in (r"(certificate verify failed[^'\")(]*)", r"\[Errno -?\d+\] ([^'\")]+)",
                r"(Connection refused|Connection reset)"):
        m = re.search(pat, text)
        if m:
            return m.group(1).strip()
    return text[:200]


def _classify(e: BaseException) -> Exception:
    """A requests exception → ``_Transient`` (worth retrying) or the error to raise at once."""
    import requests

    if isinstance(e, requests.exceptions.SSLError):
        # Configuration, not an outage: rerunning does not help (exit 2, not 4).
        return UsageError(f"TLS verification failed ({_short(e)}); if a proxy re-signs TLS, point "
                          f"REQUESTS_CA_BUNDLE at its CA file")
    if isinstance(e, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return _Transient(_short(e))
    return SalesforceError(f"the request could not be made: {_short(e)}")


def _local_tls_error(e: OSError) -> UsageError:
    """An OSError from requests before any traffic: in practice a CA bundle path that does not exist."""
    return UsageError(f"cannot set up HTTPS: {e}; check REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE")


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _truncate(part: Path) -> int:
    with open(part, "wb", opener=_private_opener):
        pass
    return 0


def _finish(part: Path, dest: Path) -> tuple[int, str]:
    """Hash the finished ``part``, rename it to ``dest`` and make the rename durable."""
    h = hashlib.sha256()
    size = 0
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    os.replace(part, dest)
    with contextlib.suppress(OSError):
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return size, h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Records, paths, SOQL


@dataclass(frozen=True)
class LogFile:
    """One EventLogFile record (no blob)."""

    id: str
    event_type: str
    log_date: str
    created_date: str
    interval: str | None
    sequence: int | None
    length: int | None

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> LogFile:
        length = r.get("LogFileLength")
        seq = r.get("Sequence")
        return cls(
            id=str(r.get("Id") or ""), event_type=str(r.get("EventType") or "Unknown"),
            log_date=str(r.get("LogDate") or ""), created_date=str(r.get("CreatedDate") or ""),
            interval=r.get("Interval"), sequence=int(seq) if isinstance(seq, (int, float)) else None,
            length=int(length) if isinstance(length, (int, float)) else None,
        )

    @property
    def created_at(self) -> dt.datetime:
        """``CreatedDate`` as an aware datetime (UTC)."""
        return parse_sf_datetime(self.created_date)


def parse_sf_datetime(text: str) -> dt.datetime:
    """A Salesforce datetime (``2024-03-11T16:05:12.000+0000``) or ISO 8601 string → aware UTC."""
    value = dt.datetime.fromisoformat(text.strip())  # 3.11 reads Z, +0000 and +00:00
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: an ISO date or datetime (UTC unless it has an offset) or a span back from
    ``now`` such as ``36h``, ``7d`` or ``2w``."""
    t = text.strip()
    m = re.fullmatch(r"(\d+)\s*([hdw])", t, re.IGNORECASE)
    try:
        if m:
            n, unit = int(m.group(1)), m.group(2).lower()
            when = now - dt.timedelta(hours=n * {"h": 1, "d": 24, "w": 168}[unit])
        else:
            when = parse_sf_datetime(t)
    except ValueError:
        raise UsageError(f"--since {text!r}: use an ISO date or datetime (2024-03-01, 2024-03-01T08:00:00Z) "
                         f"or a span such as 36h, 7d, 2w") from None
    except OverflowError:  # 99999999999d
        when = None
    # Event Monitoring keeps a year at most; before 1970 is a typo, and a year under 1000 made a
    # SOQL literal Salesforce refuses (reported as an outage, "rerun to resume").
    if when is None or when.astimezone(dt.UTC).year < 1970:
        raise UsageError(f"--since {text!r}: out of range (a time from 1970 on, or a span such as 7d)")
    return when


def soql_datetime(value: dt.datetime) -> str:
    """A SOQL datetime literal, whole seconds, UTC (``2024-03-11T16:05:12Z``); truncation keeps
    a ``>=`` filter inclusive."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_event_types(event_types: Iterable[str]) -> list[str]:
    """The event type names, sorted and unique; :class:`UsageError` for one that is no name."""
    types = sorted(set(event_types))
    for t in types:
        if not _EVENT_TYPE_RE.match(t):
            raise UsageError(f"--event-type {t!r} is not an event type name (letters, digits, _), e.g. ApexCallout")
    return types


def build_query(start: dt.datetime, event_types: Iterable[str] = ()) -> str:
    """The EventLogFile listing from ``start`` (inclusive), optionally for some event types."""
    types = check_event_types(event_types)
    where = f"CreatedDate >= {soql_datetime(start)}"
    if types:
        where += " AND EventType IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    return f"SELECT {', '.join(ELF_FIELDS)} FROM EventLogFile WHERE {where} ORDER BY CreatedDate, Id"


def _safe(component: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", component).lstrip(".")
    return s[:100] or "_"


def local_path(out_dir: Path, instance_url: str, lf: LogFile) -> Path:
    """``<out>/<host>/<EventType>/<LogDate>_<Id>.csv``; every component is reduced to
    ``[A-Za-z0-9_.-]`` so no value from the server can point outside ``out_dir``."""
    host = _safe(instance_url.split("://", 1)[-1].replace(":", "_"))
    try:
        when = parse_sf_datetime(lf.log_date)
        day = when.strftime("%Y-%m-%d") if (lf.interval or "Daily") == "Daily" else when.strftime("%Y-%m-%dT%H")
    except ValueError:
        day = "unknown-date"
    return out_dir / host / _safe(lf.event_type) / f"{day}_{_safe(lf.id)}.csv"


# ---------------------------------------------------------------------------------------------
# Database


class PullState:
    """``pull_checkpoints`` and ``pulled_files`` of one instance (and event-type filter)."""

    def __init__(self, store: Store, instance_url: str, event_types: Iterable[str] = ()):
        self.store = store
        self.instance = instance_url
        types = sorted(set(event_types))
        # A filtered pull keeps its own checkpoint: moving the instance's checkpoint past files
        # of types it did not fetch would make an unfiltered run skip them for good.
        self.checkpoint_key = instance_url + (f"?EventType={','.join(types)}" if types else "")
        self.event_types = tuple(types)

    def _exec(self, sql: str, params: list[Any]) -> list[tuple]:
        import duckdb

        from leakwatch.errors import StoreError
        from leakwatch.store.db import private_umask

        try:
            with private_umask():
                return self.store.con.execute(sql, params).fetchall()
        except duckdb.Error as e:
            raise StoreError(f"{self.store.path}: cannot record pulled files: {e}") from e

    def checkpoint(self) -> tuple[str, str | None] | None:
        """(last_created, last_id) of the newest fully stored file, or None before the first pull."""
        rows = self._exec("SELECT last_created, last_id FROM pull_checkpoints WHERE instance = ?",
                          [self.checkpoint_key])
        return (rows[0][0], rows[0][1]) if rows else None

    def earliest_failed(self) -> dt.datetime | None:
        """CreatedDate of the oldest file of this instance (and event-type filter) that a run
        listed but could not store, or was stopped while storing: the next run lists from there
        even when the checkpoint is
        later (a first run with --since 30d that failed on its oldest file, then a plain rerun
        whose 7-day window starts after it)."""
        # "downloading": a run killed or stopped (Ctrl-C, a full disk) while it fetched the file.
        sql = "SELECT min(created_date) FROM pulled_files WHERE instance = ? AND status IN ('failed', 'downloading')"
        params: list = [self.instance]
        if self.event_types:
            sql += " AND event_type IN (SELECT unnest(?))"
            params.append(list(self.event_types))
        rows = self._exec(sql, params)
        return parse_sf_datetime(rows[0][0]) if rows and rows[0][0] else None

    def set_checkpoint(self, lf: LogFile) -> None:
        """Move the checkpoint to ``lf`` (only forward)."""
        cur = self.checkpoint()
        if cur is not None and parse_sf_datetime(cur[0]) > lf.created_at:
            return
        self._exec(
            "INSERT INTO pull_checkpoints (instance, last_created, last_id) VALUES (?, ?, ?) "
            "ON CONFLICT (instance) DO UPDATE SET last_created = excluded.last_created, "
            "last_id = excluded.last_id, updated_at = now()",
            [self.checkpoint_key, lf.created_date, lf.id],
        )

    def known(self) -> dict[str, tuple[str, str | None]]:
        """log_id → (status, path) of the files already recorded. Not by instance: one org is
        reached under several host names (acme.my.salesforce.com, naNN.salesforce.com, what a
        session login reports), and an EventLogFile id names one file whichever was used; by
        host, every file was downloaded and its findings stored again on each switch."""
        rows = self._exec("SELECT log_id, status, path FROM pulled_files", [])
        return {r[0]: (r[1], r[2]) for r in rows}

    def record(self, lf: LogFile, status: str, *, path: Path | None = None, size: int | None = None,
               sha256: str | None = None, error: str | None = None) -> None:
        """Insert or update the ``pulled_files`` row of ``lf``."""
        self._exec(
            """
            INSERT INTO pulled_files (log_id, instance, event_type, log_date, created_date, interval, sequence,
                                      path, size, sha256, status, error)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (log_id) DO UPDATE SET
                instance = excluded.instance, event_type = excluded.event_type, log_date = excluded.log_date,
                created_date = excluded.created_date, interval = excluded.interval, sequence = excluded.sequence,
                path = excluded.path, size = excluded.size, sha256 = excluded.sha256, status = excluded.status,
                error = excluded.error, updated_at = now()
            """,
            [lf.id, self.instance, lf.event_type, lf.log_date, lf.created_date, lf.interval, lf.sequence,
             None if path is None else str(path), size, sha256, status, error],
        )

    def unscanned(self) -> list[str]:
        """Paths of this instance's files stored but not yet scanned."""
        rows = self._exec("SELECT path FROM pulled_files WHERE instance = ? AND status = 'stored' "
                          "ORDER BY created_date, log_id", [self.instance])
        return [r[0] for r in rows if r[0]]

    def forget_missing(self, path: str) -> None:
        """Record that the stored file at ``path`` is gone from disk (status ``failed``)."""
        self._exec("UPDATE pulled_files SET status = 'failed', error = 'deleted from disk before it was scanned', "
                   "updated_at = current_timestamp WHERE instance = ? AND path = ?", [self.instance, path])

    def mark_scanned(self, paths: Iterable[str]) -> None:
        """Set ``scanned`` on the files at ``paths``."""
        for p in paths:
            self._exec("UPDATE pulled_files SET status = 'scanned', updated_at = current_timestamp "
                       "WHERE instance = ? AND path = ? AND status = 'stored'", [self.instance, p])


def learn_prefixes(store: Store, describe: Mapping[str, Any], instance_url: str) -> int:
    """Store the org's key prefixes from a describeGlobal answer in ``sf_prefixes`` (custom
    objects' prefixes differ per org; standard ones are stored too, as this org reports them).
    Returns how many were stored. Raises :class:`InputError` for an answer that is not a
    describeGlobal, :class:`StoreError` for a database error."""
    from leakwatch.detect.salesforce import (
        prefixes_from_describe_global,
        save_learned_prefixes,
    )

    return save_learned_prefixes(store.con, prefixes_from_describe_global(describe), instance_url)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class PulledFile:
    """A file this run stored."""

    log_id: str
    event_type: str
    created_date: str
    path: str
    size: int
    sha256: str
    resumed_from: int


@dataclass
class FailedFile:
    """A file this run could not store (the checkpoint stays before it)."""

    log_id: str
    event_type: str
    created_date: str
    error: str


@dataclass
class PullResult:
    """What :func:`pull` did; the CLI prints it and derives the exit code."""

    instance: str
    query_from: str
    listed: int = 0
    already_stored: int = 0
    downloaded: list[PulledFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    # Files no retry will store (404, a size mismatch): not fetched again unless --since lists them.
    skipped: list[FailedFile] = field(default_factory=list)
    skipped_earlier: int = 0
    not_attempted: int = 0  # listed files after the first failure, left for the next run
    checkpoint_before: str | None = None
    checkpoint_after: str | None = None
    prefixes_learned: int = 0
    warnings: list[str] = field(default_factory=list)
    scanned_paths: list[str] = field(default_factory=list)
    scan: ScanSummary | None = None

    @property
    def bytes_downloaded(self) -> int:
        """Bytes written by this run (resumed files count only the part fetched now)."""
        return sum(f.size - f.resumed_from for f in self.downloaded)


ProgressFn = Callable[[int, int, str], None]


def pull(
    db_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    credentials: Credentials | None = None,
    *,
    client: SalesforceClient | None = None,
    since: dt.datetime | None = None,
    event_types: Iterable[str] = (),
    api_version: str = DEFAULT_API_VERSION,
    workers: int = 1,
    scan: bool = True,
    session: requests.Session | None = None,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    progress: ProgressFn | None = None,
    scan_progress: ProgressFn | None = None,
    scan_options: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> PullResult:
    """Pull new EventLogFile blobs of one org into ``out_dir`` and scan them into ``db_path``.

    ``credentials`` default to :meth:`Credentials.from_env`; ``client`` replaces the whole HTTP
    side (tests pass one built on the simulator's session). ``since`` overrides the checkpoint
    as the start of the listing (default: the checkpoint, or ``now`` − 7 days on the first run);
    files already stored are skipped either way. ``workers`` downloads run at once and the scan
    uses as many threads. ``progress(done, total, name)`` follows the downloads in bytes;
    ``scan_progress`` is handed to :func:`scan_paths` with ``scan_options`` (rules_dirs,
    fail_on, store_raw, argv…). Raises :class:`SalesforceAuthError` (fix the credentials),
    :class:`SalesforceError` (listing failed after retries) or :class:`StoreError`; a file that
    fails is reported in :attr:`PullResult.failed` instead.
    """
    from leakwatch.store import Store

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    now = now or dt.datetime.now(dt.UTC)
    event_types = check_event_types(event_types)  # before the login: a typo costs no round trip
    out = Path(out_dir).absolute()
    if client is None:
        client = SalesforceClient(credentials or Credentials.from_env(), api_version=api_version, session=session,
                                  retries=retries, backoff_s=backoff_s)
    client.connect()
    instance = client.instance_url
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the directory: {e.strerror}") from e
    with _out_lock(out):
        with Store.open(db_path) as store:
            result = _pull_into(store, client, instance, out, event_types, since, now, workers, progress, scan)
        if result.scanned_paths:  # the pull's Store is closed: DuckDB allows one writer per file
            _scan(db_path, instance, result, workers, scan_progress, scan_options or {})
    return result


@contextlib.contextmanager
def _out_lock(out: Path):
    """One pull at a time into a folder: two (with two databases) resumed each other's
    ``.part`` files and wrote into them at once — a corrupt file recorded as complete, and a
    traceback in the other. The lock goes with the process."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"--out {out}: another leakwatch pull is downloading into this folder; "
                             "run one pull per --out folder (or wait for it)") from None
        yield
    finally:
        os.close(fd)


def _pull_into(store: "Store", client: SalesforceClient, instance: str, out: Path, event_types: list[str],
               since: dt.datetime | None, now: dt.datetime, workers: int, progress: ProgressFn | None,
               scan: bool) -> PullResult:
    """List, download and record what is new (the part of :func:`pull` that holds the database);
    the files to scan are in ``scanned_paths``."""
    state = PullState(store, instance, event_types)
    result = PullResult(instance=instance, query_from="")
    cp = state.checkpoint()
    result.checkpoint_before = result.checkpoint_after = cp[0] if cp else None
    start = since if since is not None else (parse_sf_datetime(cp[0]) if cp else now - DEFAULT_SINCE)
    failed = state.earliest_failed() if since is None else None
    if failed is not None and failed < start:
        start = failed  # a file listed before but never stored: it is fetched again
    result.query_from = soql_datetime(start)
    # The checkpoint may only move over files listed from it on: a --since later than it
    # leaves the files in between unlisted, and a plain run must still find them.
    advance = not (since is not None and cp is not None and since > parse_sf_datetime(cp[0]))
    if not advance:
        result.warnings.append(f"--since {soql_datetime(since)} starts after the checkpoint ({cp[0]}): the "
                               f"checkpoint stays, so the next plain pull also lists the files in between")
    try:
        result.prefixes_learned = learn_prefixes(store, client.describe_global(), instance)
    except SalesforceAuthError:
        raise
    except (SalesforceError, InputError) as e:
        # Prefixes only sharpen record-id findings; the logs matter more than they do.
        result.warnings.append(f"key prefixes not learned: {e}")
    # One entry per id: a record repeated across pages (a listing that shifted while it was
    # paged) is one file, fetched once.
    records = list({lf.id: lf for lf in (LogFile.from_record(r)
                                          for r in client.query_all(build_query(start, event_types)))}.values())
    records.sort(key=lambda lf: (lf.created_at, lf.id))
    result.listed = len(records)
    _download_all(client, state, records, out, result, workers, progress, advance=advance,
                  retry_skipped=since is not None)
    cp = state.checkpoint()
    result.checkpoint_after = cp[0] if cp else None
    if scan:
        for p in state.unscanned():
            if os.path.exists(p):
                result.scanned_paths.append(p)
            else:
                # Deleted by hand before it was scanned; a listing that still includes it
                # downloads it again, an older one needs --since.
                state.forget_missing(p)
                result.warnings.append(f"{p}: stored earlier but deleted before it was scanned; "
                                       f"use --since to fetch it again")
    return result


def _download_all(client: SalesforceClient, state: PullState, records: list[LogFile], out: Path,
                  result: PullResult, workers: int, progress: ProgressFn | None, *, advance: bool = True,
                  retry_skipped: bool = False) -> None:
    """Download what is not stored yet, ``workers`` at a time; results are taken in CreatedDate
    order so the checkpoint only moves over an unbroken run of stored (or skipped) files.
    ``advance`` False leaves the checkpoint alone; a file skipped by an earlier run is tried
    again only with ``retry_skipped`` (an explicit --since)."""
    known = state.known()
    plan: list[tuple[LogFile, Path | None]] = []  # path None: already stored
    for lf in records:
        status, path = known.get(lf.id, (None, None))
        if status == "skipped" and not retry_skipped:
            result.skipped_earlier += 1
            plan.append((lf, None))
        elif status == "scanned" or (status == "stored" and path and os.path.exists(path)):
            result.already_stored += 1
            plan.append((lf, None))
        else:
            plan.append((lf, local_path(out, state.instance, lf)))
    total = sum((lf.length or 0) for lf, p in plan if p is not None)
    lock = threading.Lock()
    done = [0]
    cancel = threading.Event()

    def on_bytes(n: int, name: str) -> None:
        with lock:
            done[0] += n
            d = done[0]
        if progress is not None:
            progress(d, max(total, d), name)

    # Daemon threads (see leakwatch.threads): a download a silent server holds in a read must
    # not hold a Ctrl-C'd pull for its whole read timeout.
    pool = DaemonPool(workers, "leakwatch-pull")
    pending: deque[tuple[LogFile, Path | None, Future | None]] = deque()
    it = iter(plan)
    stop = False
    intact = True  # no failure yet: the checkpoint may follow
    auth_error: SalesforceAuthError | None = None

    def fill() -> None:
        while not stop and sum(1 for _, _, f in pending if f is not None) < workers:
            nxt = next(it, None)
            if nxt is None:
                return
            lf, path = nxt
            fut = None
            if path is not None:
                state.record(lf, "downloading", path=path)
                name = path.name
                fut = pool.submit(client.download, lf.id, path, expected=lf.length,
                                  on_bytes=lambda n, name=name: on_bytes(n, name), cancel=cancel)
            pending.append((lf, path, fut))

    try:
        fill()
        while pending:
            lf, path, fut = pending.popleft()
            if fut is None:
                if intact and advance:
                    state.set_checkpoint(lf)
            else:
                try:
                    res = fut.result()
                except PermanentDownloadError as e:
                    # No rerun will store it: recorded and reported, and the files after it go on.
                    msg = _error_text(e)
                    state.record(lf, "skipped", path=path, error=msg)
                    result.skipped.append(FailedFile(lf.id, lf.event_type, lf.created_date, msg))
                    if intact and advance:
                        state.set_checkpoint(lf)
                except SalesforceError as e:
                    msg = _error_text(e)
                    state.record(lf, "failed", path=path, error=msg)
                    result.failed.append(FailedFile(lf.id, lf.event_type, lf.created_date, msg))
                    intact = False
                    stop = True
                    if isinstance(e, SalesforceAuthError) and auth_error is None:
                        stored = len(result.downloaded)
                        auth_error = SalesforceAuthError(
                            f"EventLogFile {lf.id} ({lf.event_type}, created {lf.created_date}): {e}"
                            + (f"; the {stored} file(s) stored before it are kept and scanned by the next pull"
                               if stored else ""))
                else:
                    state.record(lf, "stored", path=res.path, size=res.size, sha256=res.sha256)
                    result.downloaded.append(PulledFile(lf.id, lf.event_type, lf.created_date, str(res.path),
                                                        res.size, res.sha256, res.resumed_from))
                    if intact and advance:
                        state.set_checkpoint(lf)
            fill()
    except BaseException:
        # In-flight downloads stop at their next read; their .part files stay. One the server
        # has gone silent on sits in a socket read until its read timeout (120 s): it is not
        # waited for, its daemon thread ends with the process, and the next pull resumes it.
        cancel.set()
        end = time.monotonic() + CANCEL_WAIT_S
        for _, _, f in pending:
            if f is not None:
                with contextlib.suppress(BaseException):
                    f.result(timeout=max(0.0, end - time.monotonic()))
        pool.shutdown(wait=False)
        raise
    pool.shutdown(wait=True)
    result.not_attempted = sum(1 for _, path in it if path is not None)
    if auth_error is not None:
        raise auth_error


# How long a stopped pull (Ctrl-C, an error) waits for its downloads to stop, in seconds.
CANCEL_WAIT_S: Final = 3.0


def _error_text(e: BaseException) -> str:
    """The message stored in ``pulled_files.error`` (already redacted by the client)."""
    return str(e)[:500]


def _scan(db_path: str | os.PathLike, instance: str, result: PullResult, workers: int,
          scan_progress: ProgressFn | None, options: Mapping[str, Any]) -> None:
    """Scan the stored files (the pull's Store is closed: DuckDB allows one writer per file),
    then mark those that scanned completely."""
    from leakwatch.pipeline import scan_paths
    from leakwatch.store import Store

    summary = scan_paths(result.scanned_paths, db_path, workers=workers, progress=scan_progress, **options)
    result.scan = summary
    # Read as far as it can ever be: a binary or truncated blob stays what it is, and scanning
    # it again on every pull only made every later pull exit 2 (it was reported once, and its
    # problems are in scan_errors). Interrupted or unreadable files are scanned again.
    lasting = {"binary", "truncated", "encoding", "long_line", "format"}
    ok = [fr.path for fr in summary.files
          if fr.status in ("ok", "unchanged", "skipped") or (fr.problems and all(p.kind in lasting for p in fr.problems))]
    with Store.open(db_path) as store:
        PullState(store, instance).mark_scanned(ok)


__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_API_VERSION",
    "READ_BYTES",
    "Credentials",
    "DownloadResult",
    "FailedFile",
    "LogFile",
    "PullResult",
    "PullState",
    "PulledFile",
    "SalesforceClient",
    "build_query",
    "check_event_types",
    "learn_prefixes",
    "local_path",
    "login_url",
    "normalize_instance_url",
    "parse_sf_datetime",
    "parse_since",
    "pull",
    "soql_datetime",
]
