"""Defects found by driving incidents and notifications against loopback ticketing servers:
each test plants the situation that lost or doubled a notification (real HTTP on 127.0.0.1,
real DuckDB files, nothing patched)."""
from __future__ import annotations

import json
import re
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import load_config
from leakwatch.notify.base import Message
from leakwatch.notify.outbox import Dispatcher, enqueue
from leakwatch.notify.secrets import SecretStore
from leakwatch.notify.sim import ServiceNowSim, sample_facts
from leakwatch.notify.targets import build_targets
from leakwatch.store import Store

PASSWORD = "sn-Pa55word!%/x"


@pytest.fixture
def sim():
    with ServiceNowSim() as s:
        s.add_user("leakwatch.integration", PASSWORD)
        yield s


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("SN_USER", "leakwatch.integration")
    monkeypatch.setenv("SN_PASSWORD", PASSWORD)


def sn_config(tmp_path, url: str, timeout_s: float = 1.0):
    path = tmp_path / "leakwatch.toml"
    path.write_text(textwrap.dedent(f"""\
        [notify]
        backoff_base_s = 0.01
        backoff_max_s = 0.01

        [[notify.targets]]
        name = "sn"
        kind = "servicenow"
        url = "{url}/"
        timeout_s = {timeout_s}
        credentials = {{ user = "SN_USER", password = "SN_PASSWORD" }}
        options = {{ assignment_group = "Security Incident Response", category = "Security" }}
        """))
    return load_config(path)


def queue_opened(store, cfg, incident_id: int = 1) -> None:
    targets = build_targets(cfg, SecretStore.from_config(cfg))
    body = json.loads(json.dumps(targets["sn"].render("incident.opened", sample_facts(), {})))
    store.con.begin()
    enqueue(store.con, Message("sn", "servicenow", "incident.opened", f"incident.opened:{incident_id}:sn:", body,
                               incident_id=incident_id), now=datetime.now(UTC))
    store.con.commit()


def dispatcher(store, cfg, **kw) -> Dispatcher:
    return Dispatcher(store, build_targets(cfg, SecretStore.from_config(cfg)), cfg, **kw)


def test_two_databases_sending_to_one_servicenow_never_take_each_others_tickets(tmp_path, sim):
    """Incident 1 of a rebuilt (or second) database has the same local key as incident 1 of the
    first. Its retry used to find the first database's ticket by correlation id and record its own
    leak as delivered: no ticket for it at all."""
    cfg = sn_config(tmp_path, sim.url)
    with Store.open(tmp_path / "a.duckdb") as a:
        queue_opened(a, cfg)
        with dispatcher(a, cfg) as d:
            assert d.run_once().delivered == 1
    sim.fail_next("/api/now/table/incident", 503, method="POST")
    with Store.open(tmp_path / "b.duckdb") as b:
        queue_opened(b, cfg)
        with dispatcher(b, cfg) as d:
            assert d.run_once().retried == 1
            time.sleep(0.05)
            st = d.run_once()
        assert st.delivered == 1 and st.found == 0
        remote = b.con.execute("SELECT remote_id FROM outbox").fetchone()[0]
    tickets = sim.records()
    assert len(tickets) == 2 and remote == tickets[1]["number"] != tickets[0]["number"]
    assert tickets[0]["correlation_id"] != tickets[1]["correlation_id"]


def test_a_slow_far_end_gets_one_ticket_not_two(tmp_path, sim):
    """The far end takes longer than the target's timeout to create the ticket. The retry used to
    come within the backoff (milliseconds), look up before the ticket existed, and post again."""
    cfg = sn_config(tmp_path, sim.url, timeout_s=0.5)
    sim.hang_next("/api/now/table/incident", 1.0, method="POST", process=True)
    with Store.open(tmp_path / "a.duckdb") as a:
        queue_opened(a, cfg)
        with dispatcher(a, cfg) as d:
            assert d.run_once().retried == 1
            row = a.con.execute("SELECT next_attempt_at - updated_at FROM outbox").fetchone()[0]
            assert row >= timedelta(seconds=0.45)  # not before the timeout has passed once more
            assert d.run_once().claimed == 0
            time.sleep(1.2)
            st = d.run_once()
        assert st.delivered == 1 and st.found == 1
    assert len(sim.records()) == 1


def test_a_dead_letter_notice_goes_to_the_other_targets_not_the_one_that_failed(tmp_path, sim):
    from leakwatch.notify.triggers import enqueue_dead_letter

    sn_config(tmp_path, sim.url)  # writes leakwatch.toml with the ServiceNow target
    path = tmp_path / "leakwatch.toml"
    path.write_text(path.read_text() + textwrap.dedent("""
        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "http://127.0.0.1:9/hook"
        credentials = { secret = "SN_PASSWORD" }

        [[notify.rules]]
        on = ["outbox.dead_letter"]
        targets = ["sn", "soc"]
        """))
    cfg = load_config(path)
    targets = build_targets(cfg, SecretStore.from_config(cfg))
    with Store.open(tmp_path / "a.duckdb") as a:
        a.con.begin()
        added = enqueue_dead_letter(a.con, cfg, targets, notification_id=7, incident_id=None, target="sn",
                                    event="incident.opened", attempts=40, last_status=503, last_error="HTTP 503",
                                    now=datetime.now(UTC))
        a.con.commit()
        rows = a.con.execute("SELECT target, event FROM outbox").fetchall()
    assert added == 1 and rows == [("soc", "outbox.dead_letter")]
    assert cfg.notify.max_attempts == 40  # the default rides out a maintenance window of hours


def config_error(tmp_path, text: str) -> str:
    """The ConfigError message of a leakwatch.toml holding ``text`` (it must not load)."""
    from leakwatch.config import ConfigError

    path = tmp_path / "leakwatch.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    return str(ei.value)


def test_a_misspelt_target_option_is_refused_with_a_hint(tmp_path):
    """An unknown ServiceNow option ('categroy') was ignored and tickets went out without their
    category; a Jira 'projct' passed loading and broke incident grouping later, with no file or
    line. The configuration now says where, and what was meant."""
    msg = config_error(tmp_path, textwrap.dedent("""\
        [[notify.targets]]
        name = "sn"
        kind = "servicenow"
        url = "https://acme.service-now.com/"
        credentials = { user = "SN_USER", password = "SN_PASSWORD" }
        options = { assignment_group = "SIR", categroy = "Security" }
        """))
    assert re.search(r"unknown option of a servicenow target 'categroy'.*did you mean 'category'", msg)


@pytest.mark.parametrize(("kind", "options", "field", "want"), [
    ("jira", '{ project = "SEC", labels = 5 }', "options.labels", "a list of strings"),
    ("jira", '{ project = "SEC", labels = "privacy" }', "options.labels", "a list of strings"),
    ("jira", '{ project = "SEC", priority = "High" }', "options.priority", "true or false"),
    ("salesforce_event", "{ event_fields = 5 }", "options.event_fields", "a list of strings"),
    ("servicenow", "{ assignment_group = 7 }", "options.assignment_group", "a string"),
    ("webhook", '{ headers = "X-Team: soc" }', "options.headers", "a table"),
])
def test_an_option_of_the_wrong_type_is_refused_when_the_config_loads(tmp_path, kind, options, field, want):
    """labels = 5 passed loading and made every incident grouping fail with a TypeError (exit 70,
    no incident ever opened); labels = "privacy" became one label per letter."""
    msg = config_error(tmp_path, textwrap.dedent(f"""\
        [[notify.targets]]
        name = "t"
        kind = "{kind}"
        url = "https://example.test/"
        credentials = {{ secret = "WH_SECRET" }}
        options = {options}
        """))
    assert f"notify.targets[0].{field}: expected {want}" in msg


@pytest.mark.parametrize(("target", "needle"), [
    ('kind = "webhook"\nurl = "https://hooks.example.test/x"', "a webhook target needs credentials = { secret"),
    ('kind = "webhook"\nurl = "http://127.0.0.1:99999/x"\ncredentials = { secret = "S" }', "a port is 1 to 65535"),
    ('kind = "webhook"\nurl = "http://exa mple.com/x"\ncredentials = { secret = "S" }', "holds a space"),
    ('kind = "jira"\nurl = "https://:443/"\noptions = { project = "SEC" }', "names no host"),
])
def test_a_target_that_could_never_deliver_is_refused_when_the_config_loads(tmp_path, target, needle):
    """Each of these loaded, then dead-lettered every notification at its first send (a
    watch --once exited 0 with all of them dead)."""
    msg = config_error(tmp_path, '[[notify.targets]]\nname = "t"\n' + target + "\n")
    assert needle in msg and "notify.targets[0]" in msg


def test_a_bad_target_url_is_never_quoted_in_the_error(tmp_path):
    """The URL may carry a password or a token: the error names the problem, not the URL."""
    msg = config_error(tmp_path, '[[notify.targets]]\nname = "t"\nkind = "webhook"\ncredentials = { secret = "S" }\n'
                                 'url = "https://bot:Sup3rS3cretPassw0rd@hooks.example.test:99999/x?token=abcdefgh12345678"\n')
    assert "notify.targets[0].url" in msg and "Sup3rS3cret" not in msg and "abcdefgh12345678" not in msg


def test_options_of_the_right_types_load(tmp_path):
    path = tmp_path / "leakwatch.toml"
    path.write_text(textwrap.dedent("""\
        [[notify.targets]]
        name = "j"
        kind = "jsm"
        url = "https://example.test/"
        options = { project = "SEC", service_desk_id = 10, request_type_id = "7", use_labels = true }
        [[notify.targets]]
        name = "c"
        kind = "salesforce_case"
        url = "https://example.test/"
        options = { api_version = 59.0, fields = { Type = "Security" } }
        """))
    cfg = load_config(path)
    assert cfg.notify.targets[0].options["service_desk_id"] == 10
    assert cfg.notify.targets[1].options["api_version"] == 59.0


def test_every_option_a_target_reads_is_a_known_one():
    import glob
    import re

    from leakwatch.notify.base import TARGET_OPTIONS

    known = set().union(*TARGET_OPTIONS.values())
    read = set()
    for f in glob.glob(str(__import__("pathlib").Path(__file__).parents[1] / "src/leakwatch/notify/targets/*.py")):
        read |= set(re.findall(r'options(?:\.get\(|\[)"(\w+)"', open(f).read()))
    assert read and read <= known
