"""The loopback Salesforce (leakwatch.salesforce.sim), driven by the real simple-salesforce client
over real HTTPS on 127.0.0.1."""
from __future__ import annotations

import hashlib

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from leakwatch.salesforce.sim import (
    SalesforceSim,
    id18,
    parse_soql,
    run_soql,
    sf_datetime,
)

CSV = (b'"EVENT_TYPE","TIMESTAMP","REQUEST_ID","ORGANIZATION_ID","USER_ID","METHOD","ENTITY_NAME","STATUS_CODE"\n'
       b'"RestApi","20240311160000.000","4ZmHG8Lm2Hd0dS1Hn9DRR-","00D5j00000AbCdE","0055j00000AT6I1","GET","Account","200"\n')


@pytest.fixture
def sim():
    with SalesforceSim(page_size=2) as s:
        s.add_user("ops@example.com", "Pa$$<w0rd>&", "TOKEN123")
        yield s


def client(sim: SalesforceSim, version: str = "60.0") -> Salesforce:
    return Salesforce(session_id=sim.issue_session(), instance_url=sim.url, session=sim.session(), version=version)


def test_id18_checksum_matches_the_documented_example():
    assert id18("0055j00000AT6I1") == "0055j00000AT6I1AAL"


def test_soap_login_with_password_and_token(sim):
    sid, instance = SalesforceLogin(username="ops@example.com", password="Pa$$<w0rd>&", security_token="TOKEN123",
                                    sf_version="60.0", session=sim.session(), scratch_url=sim.url)
    assert instance == sim.instance
    assert sid in sim.valid_sessions and sid.startswith(sim.org_id + "!")
    sf = Salesforce(session_id=sid, instance=instance, session=sim.session(), version="60.0")
    assert sf.query("SELECT Id FROM User")["totalSize"] == 1


def test_soap_login_refuses_a_wrong_password(sim):
    with pytest.raises(SalesforceAuthenticationFailed) as e:
        SalesforceLogin(username="ops@example.com", password="wrong", security_token="TOKEN123",
                        session=sim.session(), scratch_url=sim.url)
    assert e.value.code == "INVALID_LOGIN"
    assert not sim.valid_sessions


def test_oauth_password_grant(sim):
    sim.add_connected_app("3MVG9-client", "client-secret")
    r = sim.session().post(f"{sim.url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": "3MVG9-client", "client_secret": "client-secret",
        "username": "ops@example.com", "password": "Pa$$<w0rd>&TOKEN123"})
    assert r.status_code == 200
    body = r.json()
    assert body["instance_url"] == sim.url and body["access_token"] in sim.valid_sessions
    bad = sim.session().post(f"{sim.url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": "3MVG9-client", "client_secret": "nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"


def test_it_really_speaks_tls():
    with SalesforceSim() as s:
        plain = requests.Session()
        plain.trust_env = False  # the system trust store, which does not know the sim's CA
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(f"{s.url}/services/data", timeout=5)
        assert s.session().get(f"{s.url}/services/data", timeout=5).status_code == 200


def test_query_pages_with_query_more_in_created_date_order(sim):
    ids = [sim.add_event_log_file("ApexCallout", "2024-03-11", f"2024-03-12T02:0{i}:00Z", CSV) for i in (4, 1, 3, 0, 2)]
    sf = client(sim)
    first = sf.query("SELECT Id, CreatedDate FROM EventLogFile ORDER BY CreatedDate, Id")
    assert first["totalSize"] == 5 and not first["done"] and len(first["records"]) == 2
    assert first["nextRecordsUrl"].startswith("/services/data/v60.0/query/")
    records = list(sf.query_all_iter("SELECT Id, CreatedDate FROM EventLogFile ORDER BY CreatedDate, Id"))
    assert [r["Id"] for r in records] == [ids[3], ids[1], ids[4], ids[2], ids[0]]
    assert records[0]["CreatedDate"] == "2024-03-12T02:00:00.000+0000"
    more = [r for r in sim.requests if r.path.startswith("/services/data/v60.0/query/01g")]
    assert len(more) == 2  # query_all_iter fetched pages 2 and 3 with queryMore
    assert all(r.status == 200 and not r.query for r in more)


def test_soql_filters_like_salesforce(sim):
    a = sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:00:00Z", CSV)
    b = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T02:00:00Z", CSV)
    c = sim.add_event_log_file("API", "2024-03-12", "2024-03-13T01:00:00.500Z", CSV, interval="Hourly")
    sf = client(sim)

    def ids(where: str) -> list[str]:
        soql = f"SELECT Id FROM EventLogFile WHERE {where} ORDER BY CreatedDate, Id"
        return [r["Id"] for r in sf.query_all(soql)["records"]]

    assert ids("CreatedDate >= 2024-03-12T02:00:00Z") == sorted([a, b]) + [c]
    assert ids("CreatedDate > 2024-03-12T02:00:00Z") == [c]
    assert ids("CreatedDate > 2024-03-13T01:00:00Z") == [c]  # milliseconds count
    assert ids("EventType IN ('ApexCallout', 'api')") == [a, c]  # text compares case-insensitively
    assert ids("NOT (EventType = 'API') AND Interval = 'Daily'") == sorted([a, b])
    assert ids("LogDate = 2024-03-12T00:00:00Z OR EventType LIKE 'Rest%'") == [b, c]
    q = parse_soql("SELECT Id FROM X ORDER BY N DESC NULLS LAST LIMIT 2")
    assert [r["Id"] for r in run_soql(q, [{"Id": 1, "N": None}, {"Id": 2, "N": 5}, {"Id": 3, "N": 7}])] == [3, 2]
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FROM EventLogFile WHERE CreatedDate >>> 1")
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT NoSuchField FROM EventLogFile")


def test_describe_global_lists_key_prefixes(sim):
    sim.add_sobject("Invoice__c", "a0X")
    sobjects = {o["name"]: o for o in client(sim).describe()["sobjects"]}
    assert sobjects["Invoice__c"]["keyPrefix"] == "a0X" and sobjects["Invoice__c"]["custom"] is True
    assert sobjects["Case"]["keyPrefix"] == "500" and sobjects["Case"]["custom"] is False
    assert client(sim).Case.describe()["keyPrefix"] == "500"


def _blob_url(sf: Salesforce, log_id: str) -> str:
    return f"{sf.base_url}sobjects/EventLogFile/{log_id}/LogFile"


def test_blob_download_range_and_chunked(sim, tmp_path):
    blob = CSV + b"".join(b'"RestApi","2024","r%d","00D","005","GET","Contact","200"\n' % i for i in range(5000))
    big = tmp_path / "big.csv"
    big.write_bytes(blob)
    from_bytes = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T00:00:00Z", blob)
    from_file = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T00:00:01Z", csv_path=big)
    sf = client(sim)
    rec = sf.EventLogFile.get(from_bytes)
    assert rec["LogFileLength"] == len(blob) and rec["LogFile"].endswith(f"/{from_bytes}/LogFile")
    for log_id in (from_bytes, from_file):
        r = sf.session.get(_blob_url(sf, log_id), headers=sf.headers)
        assert r.status_code == 200 and r.content == blob and r.headers["Accept-Ranges"] == "bytes"
    r = sf.session.get(_blob_url(sf, from_file), headers={**sf.headers, "Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == blob[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{len(blob) - 1}/{len(blob)}"
    r = sf.session.get(_blob_url(sf, from_file), headers={**sf.headers, "Range": f"bytes={len(blob)}-"})
    assert r.status_code == 416
    sim.range_support = False
    r = sf.session.get(_blob_url(sf, from_bytes), headers={**sf.headers, "Range": "bytes=1000-"})
    assert r.status_code == 200 and r.content == blob
    sim.chunked_blobs = True
    r = sf.session.get(_blob_url(sf, from_bytes), headers=sf.headers)
    assert r.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.headers
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(blob).digest()


def test_dropped_connection_cuts_the_blob(sim):
    blob = CSV * 2000
    log_id = sim.add_event_log_file("RestApi", "2024-03-11", "2024-03-12T00:00:00Z", blob)
    sf = client(sim)
    sim.drop_connection_after(10_000)
    r = sf.session.get(_blob_url(sf, log_id), headers=sf.headers, stream=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in r.iter_content(4096):
            pass
    assert sim.requests_to(f"sobjects/EventLogFile/{log_id}/LogFile")[-1].body_bytes_sent == 10_000
    # Only the next download was cut.
    assert sf.session.get(_blob_url(sf, log_id), headers=sf.headers).content == blob


def test_expired_sessions_and_injected_faults(sim):
    sf = client(sim)
    sim.fail_next("query", 503, times=2)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as e:
            sf.query("SELECT Id FROM User")
        assert e.value.status == 503
    assert sf.query("SELECT Id FROM User")["totalSize"] == 1
    sim.fail_next("/services/data/v60.0/sobjects", 500, method="GET")
    with pytest.raises(SalesforceGeneralError):
        sf.describe()
    sim.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM User")
    unauth = [r for r in sim.requests if r.status == 401]
    assert unauth and all("Authorization" not in r.headers for r in sim.requests)


def test_case_and_platform_event_creation(sim):
    sim.add_sobject("Leak_Alert__e", "e01")
    sf = client(sim)
    made = sf.Case.create({"Subject": "PII in ApexCallout logs", "Priority": "High", "Origin": "leakwatch"})
    assert made["success"] is True and made["id"].startswith("500")
    published = sf.restful("sobjects/Leak_Alert__e/", method="POST", json={"Severity__c": "high"})
    assert published["success"] is True and published["id"].startswith("e01")
    assert [(c.sobject, c.fields) for c in sim.created_records] == [
        ("Case", {"Subject": "PII in ApexCallout logs", "Priority": "High", "Origin": "leakwatch"}),
        ("Leak_Alert__e", {"Severity__c": "high"}),
    ]
    assert sf.Case.get(made["id"])["Subject"] == "PII in ApexCallout logs"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Case.create({"Subject": "x" * 256})
    assert e.value.content[0]["errorCode"] == "STRING_TOO_LONG"
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful("sobjects/No_Such__e/", method="POST", json={})
    assert len(sim.created_records) == 2


def test_sf_datetime_format():
    assert sf_datetime("2024-03-11") == "2024-03-11T00:00:00.000+0000"
    assert sf_datetime("2024-03-11T18:05:12.5+02:00") == "2024-03-11T16:05:12.500+0000"
