"""``leakwatch pull`` against the loopback Salesforce (real simple-salesforce, real HTTPS on
127.0.0.1, real DuckDB): login, paging, checkpoints, resumable downloads, errors, scanning."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
import hashlib
from pathlib import Path
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from leakwatch.errors import SalesforceAuthError, SalesforceError, UsageError
from leakwatch.salesforce.pull import (
    CHUNK_BYTES,
    READ_BYTES,
    Credentials,
    LogFile,
    SalesforceClient,
    build_query,
    local_path,
    login_url,
    pull,
)
from leakwatch.salesforce.sim import SalesforceSim

USER = "integration.ops@acme-corp.example"
PASSWORD = "Tr0ub4dor&3-horse"
TOKEN = "Xq7RtP2mZk9LwB4nV6cH"
EMAIL = "jane.doe@example.com"

HEADER_APEX = ('"EVENT_TYPE","TIMESTAMP","REQUEST_ID","ORGANIZATION_ID","USER_ID","RUN_TIME","CPU_TIME","URI",'
               '"SESSION_KEY","LOGIN_KEY","TYPE","METHOD","SUCCESS","STATUS_CODE","TIME","REQUEST_SIZE",'
               '"RESPONSE_SIZE","URL","TIMESTAMP_DERIVED","USER_ID_DERIVED","CLIENT_IP","URI_ID_DERIVED"\n')
HEADER_REST = ('"EVENT_TYPE","TIMESTAMP","REQUEST_ID","ORGANIZATION_ID","USER_ID","RUN_TIME","CPU_TIME","URI",'
               '"SESSION_KEY","LOGIN_KEY","METHOD","ENTITY_NAME","CONNECTED_APP_ID","MEDIA_TYPE","NUMBER_FIELDS",'
               '"ROWS_PROCESSED","EXCEPTION_MESSAGE","STATUS_CODE","TIMESTAMP_DERIVED","USER_ID_DERIVED","CLIENT_IP",'
               '"URI_ID_DERIVED"\n')


def apex_csv(email: str = EMAIL) -> bytes:
    """An ApexCallout log: one call to an AI endpoint whose query string carries an email."""
    rows = [
        ('"ApexCallout","20240311160000.000","4ZmHG8Lm2Hd0dS1Hn9DRR-","00D5j00000AbCdE","0055j00000AT6I1","120","30",'
        '"","vMASKc2V0+Rt4Rpi","Ls8aXTPKNbBl5MvO","REST","POST","1","200","98","412","1530",'
        f'"https://api.openai.com/v1/chat/completions?user={email}","2024-03-11T16:00:00.000Z","0055j00000AT6I1AAL",'
        '"Salesforce.com IP",""'),
        ('"ApexCallout","20240311160512.000","4ZmHG8Lm2Hd0dS1Hn9DRS-","00D5j00000AbCdE","0055j00000AT6I1","88","21",'
        '"","vMASKc2V0+Rt4Rpi","Ls8aXTPKNbBl5MvO","REST","GET","1","200","55","0","830",'
        '"https://status.example.net/health","2024-03-11T16:05:12.000Z","0055j00000AT6I1AAL","Salesforce.com IP",""'),
    ]
    return (HEADER_APEX + "\n".join(rows) + "\n").encode()


def restapi_csv(n: int) -> bytes:
    """A RestApi log of ``n`` rows (about 330 bytes each), no PII."""
    row = ('"RestApi","20240311%06d.000","3nWgxWbDKWWDIk0FKfF5D%d","00D5j00000AbCdE","0055j00000AT6I1","%d","12",'
           '"/services/data/v60.0/sobjects/Account/0015j00000XyZaB","vMASKc2V0+Rt4Rpi","Ls8aXTPKNbBl5MvO","GET",'
           '"Account","0H45j000000Ck7b","application/json","12","1","","200","2024-03-11T16:00:00.000Z",'
           '"0055j00000AT6I1AAL","198.51.100.23","0015j00000XyZaBAAZ"\n')
    return (HEADER_REST + "".join(row % (i % 240000, i, i % 500) for i in range(n))).encode()


@pytest.fixture(autouse=True)
def _loopback_not_proxied(monkeypatch):
    """The CLI honours proxy variables (as requests does); the simulator is never behind one."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def sim():
    with SalesforceSim(page_size=2) as s:
        s.add_user(USER, PASSWORD, TOKEN)
        s.add_sobject("Invoice__c", "a0X")
        s.add_sobject("Loyalty_Member__c", "a1B")
        yield s


@pytest.fixture
def password_env(sim, monkeypatch):
    for name in ("SF_SESSION_ID", "SF_INSTANCE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SF_USERNAME", USER)
    monkeypatch.setenv("SF_PASSWORD", PASSWORD)
    monkeypatch.setenv("SF_SECURITY_TOKEN", TOKEN)
    monkeypatch.setenv("SF_DOMAIN", sim.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)  # requests' own variable: how a user trusts a private CA


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "lw.duckdb", tmp_path / "elf"


def blob_gets(sim: SalesforceSim, log_id: str | None = None):
    return [r for r in sim.requests_to("sobjects/EventLogFile/", "GET") if r.path.endswith("/LogFile")
            and (log_id is None or f"/{log_id}/" in r.path)]


def secrets_absent(text: str, *extra: str) -> None:
    for s in (PASSWORD, TOKEN, *extra):
        assert s not in text
        if "!" in s:
            assert s.split("!", 1)[1] not in text


def db_text(db: Path) -> str:
    """Every value of the tables pull writes, as one string."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return repr([con.execute(f"SELECT * FROM {t}").fetchall()
                     for t in ("pulled_files", "pull_checkpoints", "sf_prefixes", "scans", "scan_errors")])
    finally:
        con.close()


def test_password_login_downloads_stores_and_scans(sim, password_env, paths, cli, query):
    db, out = paths
    apex = apex_csv()
    rest = restapi_csv(40)
    a = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:10:00Z", apex)
    r = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:11:00Z", rest)
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-01")
    assert res.rc == 1, res.err  # findings at or above medium
    assert len(sim.requests_to("/services/Soap/u/60.0", "POST")) == 1
    rows = query(db, "SELECT log_id, event_type, path, size, sha256, status FROM pulled_files ORDER BY created_date")
    host = f"127.0.0.1_{sim.port}"
    assert rows == [
        (a, "ApexCallout", str(out.absolute() / host / "ApexCallout" / f"2024-03-11_{a}.csv"), len(apex),
         hashlib.sha256(apex).hexdigest(), "scanned"),
        (r, "RestApi", str(out.absolute() / host / "RestApi" / f"2024-03-11_{r}.csv"), len(rest),
         hashlib.sha256(rest).hexdigest(), "scanned"),
    ]
    assert Path(rows[0][2]).read_bytes() == apex and not list(out.rglob("*.part"))
    assert Path(rows[0][2]).stat().st_mode & 0o077 == 0  # customer data: private to the user
    assert query(db, "SELECT instance, last_created, last_id FROM pull_checkpoints") == [
        (sim.url, "2024-03-12T02:11:00.000+0000", r)]
    emails = query(db, "SELECT source_path, masked, raw_value FROM findings WHERE entity = 'EMAIL_ADDRESS'")
    assert [(p, raw) for p, _, raw in emails] == [(rows[0][2], None)]
    assert EMAIL not in emails[0][1]
    assert EMAIL not in res.out + res.err
    secrets_absent(res.out + res.err + db_text(db))
    assert ("a0X", "Invoice__c") in query(db, "SELECT prefix, object_name FROM sf_prefixes")
    assert ("a1B", "Loyalty_Member__c") in query(db, "SELECT prefix, object_name FROM sf_prefixes")
    # The listing asked for what the issue specifies, in CreatedDate order.
    q = sim.requests_to("query", "GET")[0].query
    assert "CreatedDate+%3E%3D+2024-03-01T00%3A00%3A00Z" in q and "ORDER+BY+CreatedDate%2C+Id" in q


def test_session_id_login(sim, paths, cli, query, monkeypatch):
    db, out = paths
    sid = sim.issue_session()
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN", "SF_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SF_SESSION_ID", sid)
    monkeypatch.setenv("SF_INSTANCE_URL", sim.url + "/")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)
    log_id = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T00:30:00Z", restapi_csv(3))
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-10", "--no-scan")
    assert res.rc == 0, res.err
    assert not sim.requests_to("/services/Soap")  # no login: the session was used as given
    assert query(db, "SELECT log_id, status FROM pulled_files") == [(log_id, "stored")]
    secrets_absent(res.out + res.err + db_text(db), sid)


def test_query_more_pages_and_a_second_run_fetches_only_new_files(sim, password_env, paths, cli, query):
    db, out = paths
    first = [sim.add_event_log_file("RestApi", "2024-03-11", f"2024-03-12T02:1{i}:00Z", restapi_csv(2))
             for i in range(5)]
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12")
    assert res.rc == 0, res.err
    more = [r for r in sim.requests_to("query/", "GET") if r.path.rstrip("/").split("/")[-1].startswith("01g")]
    assert len(more) == 2  # 5 records, pages of 2: two queryMore calls
    assert len(blob_gets(sim)) == 5
    assert query(db, "SELECT count(*) FROM pulled_files WHERE status = 'scanned'") == [(5,)]

    new = [sim.add_event_log_file("ApexCallout", "2024-03-12", f"2024-03-13T00:0{i}:00Z", apex_csv()) for i in range(2)]
    before = len(sim.requests)
    res = cli("pull", "--db", db, "--out", out)  # no --since: from the checkpoint
    assert res.rc == 1, res.err
    second = sim.requests[before:]
    assert sorted(r.path.split("/")[-2] for r in second if r.path.endswith("/LogFile")) == sorted(new)
    listing = next(r for r in second if r.query.startswith("q="))
    assert "CreatedDate+%3E%3D+2024-03-12T02%3A14%3A00Z" in listing.query  # the checkpoint's second
    assert query(db, "SELECT last_created, last_id FROM pull_checkpoints") == [("2024-03-13T00:01:00.000+0000", new[1])]
    assert "1 already stored" in res.out and "2 downloaded" in res.out
    assert all(log_id not in [r.path.split("/")[-2] for r in second if r.path.endswith("/LogFile")] for log_id in first)


def test_interrupted_download_keeps_checkpoint_and_resumes_with_range(sim, password_env, paths, cli, query):
    db, out = paths
    big = restapi_csv(9000) + apex_csv().split(b"\n", 1)[1]  # ~3 MB; the PII row comes last
    f1 = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T01:00:00Z", restapi_csv(5))
    f2 = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", big)
    f3 = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T03:00:00Z", apex_csv())
    assert len(big) > 2 * CHUNK_BYTES + 500_000
    # Both tries of f2 are cut 1.5 MB into their response.
    sim.drop_connection_after(1_500_000, times=2, path_prefix=f"sobjects/EventLogFile/{f2}/LogFile")
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--retries", "1")
    assert res.rc == 4, res.err
    assert f"EventLogFile {f2}" in res.err and "rerun to resume" in res.err
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f1,)]
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {f1: "scanned", f2: "failed"}
    assert not blob_gets(sim, f3)  # the run stopped at the first failed file
    part = next(out.rglob(f"*_{f2}.csv.part"))
    # Each try kept the whole reads it received (64 KiB each) before the cut, and the second
    # resumed where the first stopped.
    kept = 1_500_000 // READ_BYTES * READ_BYTES
    assert part.stat().st_size == 2 * kept
    assert [r.headers.get("Range") for r in blob_gets(sim, f2)] == [None, f"bytes={kept}-"]

    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 1, res.err
    last = blob_gets(sim, f2)[-1]
    assert last.headers.get("Range") == f"bytes={2 * kept}-" and last.status == 206
    assert last.body_bytes_sent == len(big) - 2 * kept
    assert len(blob_gets(sim, f1)) == 1  # already stored: not fetched again
    stored = {r[0]: r[1:] for r in query(db, "SELECT log_id, sha256, size, status, path FROM pulled_files")}
    assert stored[f2][:3] == (hashlib.sha256(big).hexdigest(), len(big), "scanned")
    assert hashlib.sha256(Path(stored[f2][3]).read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()
    assert not part.exists()
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f3,)]
    assert "1 resumed" in res.out


def test_ctrl_c_during_a_silent_download_stops_promptly_and_the_next_pull_fetches_it(sim, password_env, paths, query):
    # The server has gone silent on the blob: the download sits in a socket read with a 120 s
    # read timeout. Ctrl-C must not wait for it (the pool's threads used to be joined at exit).
    db, out = paths
    f = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:10:00Z", apex_csv())
    sim.hang_next(f"sobjects/EventLogFile/{f}/LogFile", 90)
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "pull", "--db", str(db), "--out", str(out),
                          "--since", "2024-03-01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not blob_gets(sim, f) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.05)
        assert blob_gets(sim, f), "the download never started"
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert took < 30, f"Ctrl-C took {took:.1f} s: it waited for the silent read"
    assert query(db, "SELECT status FROM pulled_files WHERE log_id = ?", f) == [("downloading",)]
    # The next pull lists the file again and stores it (the hang was for one request).
    creds = Credentials.from_env()
    result = pull(db, out, creds, session=sim.session(), backoff_s=0, scan=False)
    assert [d.log_id for d in result.downloaded] == [f]
    assert Path(result.downloaded[0].path).read_bytes() == apex_csv()


def test_server_without_range_support_restarts_the_file(sim, password_env, paths, query):
    db, out = paths
    sim.range_support = False
    big = restapi_csv(7000)
    log_id = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", big)
    sim.drop_connection_after(1_200_000, times=1, path_prefix=f"sobjects/EventLogFile/{log_id}/LogFile")
    creds = Credentials.from_env()
    result = pull(db, out, creds, session=sim.session(), since=_dt("2024-03-12"), backoff_s=0, scan=False)
    gets = blob_gets(sim, log_id)
    assert [g.headers.get("Range") for g in gets] == [None, f"bytes={1_200_000 // READ_BYTES * READ_BYTES}-"]
    assert [g.status for g in gets] == [200, 200]  # the range was ignored: the file started again
    assert result.downloaded[0].resumed_from == 0 and result.downloaded[0].sha256 == hashlib.sha256(big).hexdigest()
    assert Path(result.downloaded[0].path).read_bytes() == big


def test_files_sharing_a_created_date_are_not_lost(sim, password_env, paths, cli, query):
    db, out = paths
    a = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:00:00Z", apex_csv())
    b = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", restapi_csv(2))
    first, second = sorted([a, b])
    sim.fail_next(f"sobjects/EventLogFile/{second}/LogFile", 503, times=1)
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--retries", "0", "--no-scan")
    assert res.rc == 4
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(first,)]
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert len(blob_gets(sim, first)) == 1 and len(blob_gets(sim, second)) == 2
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {first: "stored", second: "stored"}
    # The stored files are scanned by the next run that scans.
    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 1 and query(db, "SELECT count(*) FROM pulled_files WHERE status = 'scanned'") == [(2,)]


def test_checkpoint_never_passes_a_failed_file_even_when_later_ones_arrive(sim, password_env, paths, cli, query):
    db, out = paths
    f1, f2, f3 = (sim.add_event_log_file("RestApi", "2024-03-11", f"2024-03-12T0{i}:00:00Z", restapi_csv(2))
                  for i in (1, 2, 3))
    sim.fail_next(f"sobjects/EventLogFile/{f2}/LogFile", 500, times=1)
    # Three at once: f3 is already downloading when f2 fails, and is kept.
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--retries", "0", "--workers", "3",
              "--no-scan")
    assert res.rc == 4
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {f1: "stored", f2: "failed", f3: "stored"}
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f1,)]
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert [len(blob_gets(sim, f)) for f in (f1, f2, f3)] == [1, 2, 1]
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f3,)]


def test_refused_session_is_explained_without_the_secret(sim, paths, cli, query, monkeypatch):
    db, out = paths
    bogus = "00D5j00000AbCdE!AQ8AQGvHd0tq9ZfTZz8H2kJqLxY.k3m_NotIssuedByTheServer"
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SF_SESSION_ID", bogus)
    monkeypatch.setenv("SF_INSTANCE_URL", sim.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)
    sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", restapi_csv(2))
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12")
    assert res.rc == 2
    assert "Salesforce refused the session (401): check SF_SESSION_ID" in res.err
    secrets_absent(res.out + res.err, bogus)
    assert not blob_gets(sim)


def test_wrong_password_is_explained_without_the_secret(sim, password_env, paths, cli, monkeypatch):
    db, out = paths
    monkeypatch.setenv("SF_PASSWORD", PASSWORD + "-old")
    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 2
    assert "Salesforce refused the login" in res.err and "INVALID_LOGIN" in res.err and "SF_PASSWORD" in res.err
    secrets_absent(res.out + res.err, PASSWORD + "-old")


def test_session_expiring_mid_run(sim, password_env, paths, cli, query, monkeypatch):
    db, out = paths
    f1 = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T01:00:00Z", restapi_csv(2))
    f2 = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", restapi_csv(2))
    # A password login logs in again and goes on.
    sim.fail_next(f"sobjects/EventLogFile/{f2}/LogFile", 401)
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--no-scan")
    assert res.rc == 0, res.err
    assert len(sim.requests_to("/services/Soap/u/", "POST")) == 2
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f2,)]

    # A session id cannot be renewed: exit 2, checkpoint kept before the refused file.
    f3 = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T03:00:00Z", restapi_csv(2))
    sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T04:00:00Z", restapi_csv(2))
    sid = sim.issue_session()
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SF_SESSION_ID", sid)
    monkeypatch.setenv("SF_INSTANCE_URL", sim.url)
    sim.fail_next(f"sobjects/EventLogFile/{f3}/LogFile", 401)
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 2 and "refused the session (401)" in res.err
    secrets_absent(res.out + res.err + db_text(db), sid)
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(f2,)]
    assert query(db, "SELECT status FROM pulled_files WHERE log_id = ?", f3) == [("failed",)]
    assert f1


def test_5xx_is_retried_with_backoff(sim, password_env, paths, query):
    db, out = paths
    log_id = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:00:00Z", apex_csv())
    sim.fail_next("query", 503, times=2)
    sim.fail_next(f"sobjects/EventLogFile/{log_id}/LogFile", 503, times=1, retry_after=3)
    sim.fail_next(f"sobjects/EventLogFile/{log_id}/LogFile", 502, times=1)
    waits: list[float] = []
    client = SalesforceClient(Credentials.from_env(), session=sim.session(), sleep=waits.append)
    result = pull(db, out, client=client, since=_dt("2024-03-12"), scan=True)
    assert waits == [1.0, 2.0, 3.0, 2.0]  # query: 1, 2; blob: Retry-After 3, then the doubled 2
    assert [r.status for r in sim.requests_to("query", "GET")] == [503, 503, 200]
    assert [r.status for r in blob_gets(sim, log_id)] == [503, 502, 200]
    assert not result.failed and result.scan is not None and result.scan.total_findings >= 1
    assert query(db, "SELECT status FROM pulled_files") == [("scanned",)]


def test_unreachable_server_is_a_salesforce_error(sim, paths):
    db, out = paths
    with SalesforceSim() as gone:
        dead_url = gone.url
    creds = Credentials(username=USER, password=PASSWORD, security_token=TOKEN, domain=dead_url)
    waits: list[float] = []
    client = SalesforceClient(creds, session=sim.session(), retries=2, sleep=waits.append)
    with pytest.raises(SalesforceError) as e:
        pull(db, out, client=client)
    assert str(e.value) == (f"Salesforce could not log in after 3 tries: cannot reach {dead_url}: Connection refused")
    assert waits == [1.0, 2.0]
    assert not db.exists()  # nothing was opened before the login worked


def test_exhausted_retries_exit_4(sim, password_env, paths, cli):
    db, out = paths
    sim.fail_next("query", 503, times=5)
    res = cli("pull", "--db", db, "--out", out, "--retries", "0")
    assert res.rc == 4
    assert "could not list EventLogFile records after 1 try: HTTP 503" in res.err


def test_event_type_filter_and_parallel_downloads(sim, password_env, paths, cli, query):
    db, out = paths
    wanted = []
    for i in range(6):
        wanted.append(sim.add_event_log_file("ApexCallout", "2024-03-11", f"2024-03-12T02:0{i}:00Z", apex_csv()))
        sim.add_event_log_file("Login", "2024-03-11", f"2024-03-12T02:0{i}:30Z", restapi_csv(1))
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--event-type", "ApexCallout",
              "--workers", "3")
    assert res.rc == 1, res.err
    assert sorted(r[0] for r in query(db, "SELECT log_id FROM pulled_files")) == sorted(wanted)
    assert query(db, "SELECT instance, last_id FROM pull_checkpoints") == [
        (sim.url + "?EventType=ApexCallout", wanted[-1])]
    res = cli("pull", "--db", db, "--out", out, "--event-type", "Bad'Type")
    assert res.rc == 2 and "--event-type" in res.err


def test_help_teaches_and_leaks_nothing(password_env, cli):
    res = cli("pull", "--help")
    assert res.rc == 0
    for word in ("SF_SESSION_ID", "SF_INSTANCE_URL", "SF_USERNAME", "SF_SECURITY_TOKEN", "SF_DOMAIN", "--since",
                 "--event-type", "exit codes", "Range", "examples"):
        assert word in res.out
    secrets_absent(res.out + res.err, USER)


def test_missing_credentials(paths, cli, monkeypatch):
    db, out = paths
    for name in ("SF_SESSION_ID", "SF_INSTANCE_URL", "SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SF_SESSION_ID", "00Dx!secret")
    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 2 and "SF_INSTANCE_URL is not set" in res.err and "secret" not in res.err
    monkeypatch.delenv("SF_SESSION_ID")
    monkeypatch.setenv("SF_USERNAME", USER)
    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 2 and "SF_PASSWORD, SF_SECURITY_TOKEN not set" in res.err


def test_credentials_never_show_in_repr_or_redacted_text():
    c = Credentials(username=USER, password=PASSWORD, security_token=TOKEN)
    assert PASSWORD not in repr(c) and TOKEN not in repr(c)
    assert c.redact(f"bad {PASSWORD}{TOKEN} and {TOKEN}") == "bad *** and ***"
    s = Credentials(session_id="00D5j00000AbCdE!AQtokenpart", instance_url="https://x.my.salesforce.com")
    assert s.redact("echo AQtokenpart") == "echo ***"


def test_paths_stay_inside_the_output_directory(tmp_path):
    lf = LogFile(id="0AT5j00000AbCdEGAA", event_type="../../etc/cron.d", log_date="2024-03-11T16:00:00.000+0000",
                 created_date="2024-03-12T00:00:00.000+0000", interval="Hourly", sequence=1, length=None)
    p = local_path(tmp_path, "https://acme.my.salesforce.com", lf)
    assert p.parent.parent.parent == tmp_path and ".." not in p.parts
    assert p.name == "2024-03-11T16_0AT5j00000AbCdEGAA.csv"


def test_login_url_and_query_building():
    assert login_url(None) == "https://login.salesforce.com"
    assert login_url("test") == "https://test.salesforce.com"
    assert login_url("acme.my") == "https://acme.my.salesforce.com"
    assert login_url("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    with pytest.raises(UsageError):
        login_url("http://login.example")  # a password never goes over plain http
    q = build_query(_dt("2024-03-12T02:00:00.750"), ["RestApi", "ApexCallout"])
    assert q == ("SELECT Id, EventType, LogDate, CreatedDate, Interval, Sequence, LogFileLength FROM EventLogFile "
                 "WHERE CreatedDate >= 2024-03-12T02:00:00Z AND EventType IN ('ApexCallout', 'RestApi') "
                 "ORDER BY CreatedDate, Id")


def test_auth_error_type_from_library(sim, paths):
    db, out = paths
    creds = Credentials(session_id="00D5j00000AbCdE!AQnope", instance_url=sim.url)
    with pytest.raises(SalesforceAuthError):
        pull(db, out, creds, session=sim.session())


def _dt(text: str):
    from leakwatch.salesforce.pull import parse_sf_datetime

    return parse_sf_datetime(text)


def test_a_file_that_failed_is_fetched_again_though_it_is_older_than_the_next_window(sim, password_env, paths, cli,
                                                                                     query):
    """A first run with --since 30d fails on its oldest file; a plain rerun lists the default
    7 days only. The failed file is listed again (from its CreatedDate) and stored, instead of
    being passed by the checkpoint for good."""
    db, out = paths
    now = datetime.now(timezone.utc)
    stamp = lambda d: (now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    old = sim.add_event_log_file("RestApi", (now - timedelta(days=21)).strftime("%Y-%m-%d"), stamp(20), restapi_csv(2))
    new = sim.add_event_log_file("RestApi", (now - timedelta(days=2)).strftime("%Y-%m-%d"), stamp(1), restapi_csv(2))
    sim.fail_next(f"sobjects/EventLogFile/{old}/LogFile", 503, times=3)
    res = cli("pull", "--db", db, "--out", out, "--since", "30d", "--retries", "1", "--no-scan")
    assert res.rc == 4
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {old: "stored", new: "stored"}
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(new,)]


# -- review of pull under faults -------------------------------------------------------------


def _stamp(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%d")


def test_a_since_after_the_checkpoint_leaves_it_so_the_files_in_between_are_not_lost(sim, password_env, paths,
                                                                                    cli, query):
    db, out = paths
    first = sim.add_event_log_file("RestApi", _day(6), _stamp(5), restapi_csv(2))
    assert cli("pull", "--db", db, "--out", out, "--no-scan").rc == 0
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(first,)]
    between = sim.add_event_log_file("RestApi", _day(4), _stamp(3), restapi_csv(2))
    latest = sim.add_event_log_file("RestApi", _day(2), _stamp(1), restapi_csv(2))
    res = cli("pull", "--db", db, "--out", out, "--no-scan", "--since", "2d")
    assert res.rc == 0, res.err
    assert "starts after the checkpoint" in res.err
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(first,)]
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {first: "stored", between: "stored",
                                                                         latest: "stored"}
    assert len(blob_gets(sim, latest)) == 1  # stored by the --since run, not fetched again
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(latest,)]


def test_a_run_stopped_mid_download_is_resumed_by_a_plain_run(sim, password_env, paths, cli, query):
    """Ctrl-C (or a full disk) while the oldest file of a --since 30d first run downloads: its
    row stays "downloading" and there is no checkpoint. A plain rerun (7-day window) lists from
    that file again and stores it, instead of passing it for good."""
    db, out = paths
    old = sim.add_event_log_file("RestApi", _day(21), _stamp(20), restapi_csv(6000))
    new = sim.add_event_log_file("RestApi", _day(2), _stamp(1), restapi_csv(2))

    def stop(done, total, name):
        raise KeyboardInterrupt

    client = SalesforceClient(Credentials.from_env(), session=sim.session(), sleep=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        pull(db, out, client=client, since=datetime.now(timezone.utc) - timedelta(days=30), scan=False,
             progress=stop)
    assert query(db, "SELECT log_id, status FROM pulled_files") == [(old, "downloading")]
    assert query(db, "SELECT count(*) FROM pull_checkpoints") == [(0,)]
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {old: "stored", new: "stored"}
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(new,)]


def test_a_file_no_retry_will_store_is_skipped_and_the_pull_goes_on(sim, password_env, paths, cli, query):
    """A blob that is gone (404) or shorter than its LogFileLength blocked every later pull (the
    checkpoint stayed before it and each run said 'rerun to resume'). It is skipped, named, and
    the exit code is 2; later files are stored and the checkpoint passes it. Only a --since run
    that lists it tries it again."""
    db, out = paths
    gone = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T01:00:00Z", restapi_csv(2))
    short = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", restapi_csv(2),
                                   log_file_length=len(restapi_csv(2)) + 100)
    later = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T03:00:00Z", apex_csv())
    sim.fail_next(f"sobjects/EventLogFile/{gone}/LogFile", 404, times=1)
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--retries", "3", "--no-scan")
    assert res.rc == 2, res.err
    assert f"pull skipped: EventLogFile {gone}" in res.err and "404" in res.err
    assert f"pull skipped: EventLogFile {short}" in res.err and "size mismatch" in res.err
    assert len(blob_gets(sim, short)) == 1  # not retried: no retry changes the size
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {gone: "skipped", short: "skipped",
                                                                         later: "stored"}
    assert query(db, "SELECT last_id FROM pull_checkpoints") == [(later,)]
    res = cli("pull", "--db", db, "--out", out, "--no-scan")
    assert res.rc == 0, res.err
    assert len(blob_gets(sim, gone)) == 1 and len(blob_gets(sim, short)) == 1
    # An explicit --since lists them again and tries them: the 404 is over, so that one is stored.
    res = cli("pull", "--db", db, "--out", out, "--no-scan", "--since", "2024-03-12")
    assert res.rc == 2
    assert dict(query(db, "SELECT log_id, status FROM pulled_files"))[gone] == "stored"


def test_a_session_id_with_a_line_break_is_refused_without_showing_it(sim, paths, cli, monkeypatch):
    db, out = paths
    sid = sim.issue_session()
    org, token = sid.split("!", 1)
    monkeypatch.setenv("SF_SESSION_ID", f"{org}!{token[:20]}\n{token[20:]}")
    monkeypatch.setenv("SF_INSTANCE_URL", sim.url)
    res = cli("pull", "--db", db, "--out", out)
    assert res.rc == 2
    assert "SF_SESSION_ID holds a space, a line break" in res.err
    assert token[:20] not in res.err + res.out and token[20:] not in res.err + res.out


def test_redaction_catches_escaped_and_split_secrets():
    creds = Credentials(session_id="00D5j00000AbCdE!AQ4AQMmTokenPartOne\nAndPartTwoXyz", instance_url="https://x")
    text = ("header value: 'Bearer 00D5j00000AbCdE!AQ4AQMmTokenPartOne\\nAndPartTwoXyz' and "
            "AQ4AQMmTokenPartOne alone")
    clean = creds.redact(text)
    assert "TokenPartOne" not in clean and "AndPartTwoXyz" not in clean


def test_a_login_service_in_maintenance_is_retried_not_called_a_wrong_password(sim, password_env, paths, cli):
    db, out = paths
    sim.fail_next("/services/Soap/u/", 503, times=5, body="<html><body>Down for maintenance</body></html>")
    res = cli("pull", "--db", db, "--out", out, "--retries", "1")
    assert res.rc == 4, res.err
    assert "refused the login" not in res.err and "not answering logins" in res.err
    assert len(sim.requests_to("/services/Soap/u/", "POST")) == 2


def test_a_stale_instance_url_does_not_turn_a_password_login_into_a_session_login(monkeypatch):
    env = {"SF_USERNAME": USER, "SF_PASSWORD": PASSWORD, "SF_SECURITY_TOKEN": TOKEN,
           "SF_INSTANCE_URL": "https://old.my.salesforce.com"}
    assert Credentials.from_env(env).kind == "password"
    with pytest.raises(UsageError, match="SF_SESSION_ID is not set"):
        Credentials.from_env({"SF_INSTANCE_URL": "https://old.my.salesforce.com"})


def test_an_output_directory_that_cannot_be_made_is_a_usage_error(sim, password_env, paths, cli, query, tmp_path):
    db, out = paths
    sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T01:00:00Z", restapi_csv(2))
    # A first pull elsewhere shows where the file goes under --out; here a plain file stands there.
    other = tmp_path / "first"
    assert cli("pull", "--db", other / "lw.duckdb", "--out", other / "elf", "--since", "2024-03-12",
               "--no-scan").rc == 0
    where = Path(query(other / "lw.duckdb", "SELECT path FROM pulled_files")[0][0]).parent.relative_to(other / "elf")
    blocker = out / where
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--no-scan")
    assert res.rc == 2, res.err
    assert "cannot create the download directory" in res.err and "internal error" not in res.err


def test_a_record_repeated_across_query_pages_is_one_file(sim, password_env, paths, cli, query):
    db, out = paths
    sim.page_overlap = 1
    ids = [sim.add_event_log_file("RestApi", "2024-03-11", f"2024-03-12T0{i}:00:00Z", restapi_csv(2))
           for i in range(1, 7)]
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12", "--workers", "3", "--no-scan")
    assert res.rc == 0, res.err
    assert "6 file(s) listed since" in res.out and "6 downloaded" in res.out
    assert [len(blob_gets(sim, i)) for i in ids] == [1] * 6


def test_a_link_that_drops_every_few_hundred_kilobytes_still_finishes(sim, password_env, paths, query):
    db, out = paths
    blob = restapi_csv(4000)  # ~1.3 MB
    log_id = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", blob)
    sim.drop_connection_after(300_000, times=8, path_prefix=f"sobjects/EventLogFile/{log_id}/LogFile")
    client = SalesforceClient(Credentials.from_env(), session=sim.session(), sleep=lambda s: None, retries=8)
    result = pull(db, out, client=client, since=_dt("2024-03-12"), scan=False)
    assert not result.failed and Path(result.downloaded[0].path).read_bytes() == blob
    ranges = [r.headers.get("Range") for r in blob_gets(sim, log_id)]
    assert ranges[0] is None and all(r is not None for r in ranges[1:]) and len(ranges) <= 6


def test_a_403_on_one_blob_names_the_file(sim, password_env, paths, cli, query):
    db, out = paths
    ok = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T01:00:00Z", restapi_csv(2))
    refused = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:00:00Z", apex_csv())
    sim.fail_next(f"sobjects/EventLogFile/{refused}/LogFile", 403, times=1)
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-12")
    assert res.rc == 2
    assert f"EventLogFile {refused} (ApexCallout" in res.err and "(403)" in res.err
    assert "1 file(s) stored before it are kept" in res.err
    assert dict(query(db, "SELECT log_id, status FROM pulled_files")) == {ok: "stored", refused: "failed"}


def test_an_event_type_typo_is_refused_before_any_request(sim, password_env, paths, cli):
    db, out = paths
    res = cli("pull", "--db", db, "--out", out, "--event-type", "Apex Callout")
    assert res.rc == 2 and "is not an event type name" in res.err
    assert sim.requests_to("/") == [] and not Path(out).exists()


# --- review: two pulls, two host names, odd --since values, blobs that never scan ---------------


def test_a_second_pull_into_the_same_folder_is_refused_while_one_runs(sim, password_env, paths, cli):
    """Two pulls (two databases) resumed each other's .part files: a corrupt file recorded as
    complete in one, a traceback (exit 70) in the other."""
    import fcntl
    import os

    db, out = paths
    sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:10:00Z", restapi_csv(3))
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running pull holds
        res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-01")
        assert res.rc == 2 and "another leakwatch pull is downloading into this folder" in res.err
        assert not blob_gets(sim)
    finally:
        os.close(fd)
    assert cli("pull", "--db", db, "--out", out, "--since", "2024-03-01").rc == 0


def test_one_org_under_two_host_names_downloads_each_file_once(sim, password_env, paths, cli, query, monkeypatch):
    db, out = paths
    log_id = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:10:00Z", apex_csv())
    assert cli("pull", "--db", db, "--out", out, "--since", "2024-03-01").rc == 1
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN", "SF_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SF_SESSION_ID", sim.issue_session())
    monkeypatch.setenv("SF_INSTANCE_URL", f"https://localhost:{sim.port}/")
    res = cli("pull", "--db", db, "--out", out, "--since", "2024-03-01")
    assert res.rc == 0, res.err
    assert len(blob_gets(sim, log_id)) == 1
    assert query(db, "SELECT count(*) FROM findings WHERE entity = 'EMAIL_ADDRESS'") == [(1,)]


@pytest.mark.parametrize("since", ["99999999999d", "999999999w", "0999-12-31", "0001-01-01T00:00Z"])
def test_since_out_of_range_is_a_usage_error(sim, password_env, paths, cli, since):
    db, out = paths
    res = cli("pull", "--db", db, "--out", out, "--since", since)
    assert res.rc == 2 and "out of range" in res.err and "Traceback" not in res.err, res.err
    assert not sim.requests_to("query", "GET")


def test_a_blob_that_never_scans_is_reported_once_not_on_every_pull(sim, password_env, paths, cli, query):
    db, out = paths
    sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:10:00Z", bytes(range(256)) * 800)
    first = cli("pull", "--db", db, "--out", out, "--since", "2024-03-01")
    assert first.rc == 2 and "binary file" in first.err
    assert query(db, "SELECT status FROM pulled_files") == [("scanned",)]
    again = cli("pull", "--db", db, "--out", out)
    assert again.rc == 0 and "binary" not in again.err, again.err


def test_an_api_version_or_event_type_with_a_trailing_newline_is_refused(sim, password_env, paths, cli):
    db, out = paths
    res = cli("pull", "--db", db, "--out", out, "--api-version", "60.0\n")
    assert res.rc == 2 and "SF_PASSWORD" not in res.err, res.err
    res = cli("pull", "--db", db, "--out", out, "--event-type", "ApexCallout\n")
    assert res.rc == 2, res.err
