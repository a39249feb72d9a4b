"""``leakwatch notify status | dispatch | test | retry`` end to end: the real CLI (in process),
a real DuckDB file, a verifying webhook receiver on 127.0.0.1, credentials from the environment
or a secrets file that must never show up in any output."""
from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime

import pytest

from leakwatch import cli
from leakwatch.notify.base import Message
from leakwatch.notify.outbox import delivery_namespace, enqueue
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.webhook_verify import new_secret
from leakwatch.store import Store

if "leakwatch.commands.notify" not in cli.COMMAND_MODULES:  # until the lead wires the command in
    cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, "leakwatch.commands.notify")

SECRET_VAR = "LW_TEST_CLI_SECRET"


@pytest.fixture
def run(capsys):
    def go(*args):
        capsys.readouterr()
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return int(rc), out, err

    return go


@pytest.fixture
def secret(monkeypatch):
    value = new_secret()
    monkeypatch.setenv(SECRET_VAR, value)
    return value


@pytest.fixture
def receiver(secret):
    with WebhookReceiver(secret) as rx:
        yield rx


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "lw.duckdb"
    Store.open(path).close()
    return path


def write_config(tmp_path, url: str, extra: str = "", credentials: str = f'{{ secret = "{SECRET_VAR}" }}') -> str:
    path = tmp_path / "leakwatch.toml"
    path.write_text(textwrap.dedent(f"""\
        [notify]
        backoff_base_s = 0.01
        backoff_max_s = 0.05
        {extra}

        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "{url}"
        timeout_s = 5
        credentials = {credentials}
        """))
    return str(path)


def queue(db, n: int, start: int = 0) -> list[str]:
    keys = []
    with Store.open(db) as s:
        for i in range(start, start + n):
            key = f"incident.opened:{i}:soc:"
            enqueue(s.con, Message("soc", "webhook", "incident.opened", key, {"type": "incident.opened", "data": {"i": i}}),
                    now=datetime.now(UTC))
            keys.append(key)
    return keys


def test_help_has_examples_and_exit_codes(run):
    for args in (["notify", "--help"], ["notify", "dispatch", "--help"], ["webhook", "--help"]):
        rc, out, _ = run(*args)
        assert rc == 0 and "exit codes:" in out, args
    rc, out, _ = run("notify", "--help")
    assert "examples:" in out and "leakwatch notify test --target" in out and "dead letter" in out


def test_status_then_canary_round_trip(tmp_path, db, receiver, run):
    cfg = write_config(tmp_path, receiver.url)
    rc, out, _ = run("notify", "status", "--db", db, "--config", cfg)
    assert rc == 0 and "nothing queued" in out
    rc, out, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    assert rc == 0, err
    assert "canary to soc (webhook) delivered in" in out and "HTTP 200" in out
    d = receiver.deliveries[0]
    assert f"remote id {d.delivery_id}" in out
    with Store.open(db) as s:
        ns = delivery_namespace(s.key)
    assert d.webhook_id.startswith(ns + "canary:soc:")
    body = d.json()
    assert body["type"] == "canary" and body["data"]["canary"] is True
    assert body["data"]["subject"].startswith("[leakwatch canary]") and body["data"]["incident"] is None
    rc, out, _ = run("notify", "status", "--json", "--db", db, "--config", cfg)
    st = json.loads(out)
    assert rc == 0 and st["totals"]["delivered"] == 1 and st["by_target"]["soc"]["delivered"] == 1
    rc, out, _ = run("notify", "test", "--target", "soc", "--json", "--db", db, "--config", cfg)
    res = json.loads(out)
    assert rc == 0 and res["delivered"] is True and res["round_trip_ms"] > 0 and res["http_status"] == 200


def test_canary_that_fails_exits_4_and_is_not_retried_later(tmp_path, db, receiver, run):
    cfg = write_config(tmp_path, receiver.url)
    receiver.fail_next(500)
    rc, _, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    assert rc == 4 and "NOT delivered" in err and "HTTP 500" in err
    rc, out, _ = run("notify", "dispatch", "--once", "--db", db, "--config", cfg)
    assert rc == 0 and "delivered 0" in out and receiver.request_count == 1   # the canary was not sent again
    rc, _, err = run("notify", "test", "--target", "sco", "--db", db, "--config", cfg)
    assert rc == 2 and "unknown notification target 'sco'" in err and "did you mean 'soc'" in err


def test_dispatch_dead_letters_status_and_retry(tmp_path, db, receiver, run):
    cfg = write_config(tmp_path, receiver.url)
    keys = queue(db, 3)
    receiver.fail_next(400, body='{"error": "unknown field i"}')
    rc, out, err = run("notify", "dispatch", "--until-empty", "--timeout", "20", "--workers", "1", "--db", db, "--config", cfg)
    assert rc == 4, (out, err)
    assert "delivered 2" in out and "dead 1" in out and "0 still queued" in out
    assert "DEAD LETTER #" in err and "HTTP 400" in err
    dead_id = int(err.split("DEAD LETTER #")[1].split(":")[0])
    rc, out, _ = run("notify", "status", "--db", db, "--config", cfg)
    assert rc == 0 and "DEAD LETTERS: 1" in out and "unknown field i" in out
    assert "2 delivered, 1 dead" in out
    rc, _, _ = run("notify", "status", "--fail-on-dead", "--db", db, "--config", cfg)
    assert rc == 4
    rc, out, err = run("notify", "retry", "--db", db, "--config", cfg)
    assert rc == 2 and "--all" in err
    rc, out, err = run("notify", "retry", str(dead_id), "--db", db, "--config", cfg)
    assert rc == 0 and f"requeued 1 notification(s): {dead_id}" in out
    rc, out, err = run("notify", "retry", str(dead_id), "--db", db, "--config", cfg)
    assert rc == 2 and "only dead letters" in err
    rc, out, _ = run("notify", "dispatch", "--until-empty", "--timeout", "20", "--db", db, "--config", cfg)
    assert rc == 0 and "delivered 1" in out
    with Store.open(db) as s:
        ns = delivery_namespace(s.key)
    assert sorted(receiver.ids()) == sorted(ns + k for k in keys)
    rc, _, _ = run("notify", "status", "--fail-on-dead", "--db", db, "--config", cfg)
    assert rc == 0


def test_secrets_file_must_be_private_and_secrets_never_print(tmp_path, db, receiver, secret, run, monkeypatch):
    monkeypatch.delenv(SECRET_VAR)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# leakwatch credentials\nexport {SECRET_VAR}='{secret}'\n")
    os.chmod(secrets, 0o644)
    cfg = write_config(tmp_path, receiver.url, extra=f'secrets_file = "{secrets}"')
    outputs = []
    rc, out, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    outputs += [out, err]
    assert rc == 2 and "mode 0644" in err and "chmod 600" in err
    os.chmod(secrets, 0o600)
    rc, out, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    outputs += [out, err]
    assert rc == 0 and "delivered" in out, err    # the secret came from the file and signed correctly
    assert receiver.rejected == []
    # A receiver that quotes the secret in its error, and a dead letter that shows it.
    receiver.fail_next(401, times=3, body=f"invalid signing secret {secret}")
    rc, out, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    outputs += [out, err]
    assert rc == 4 and "[REDACTED]" in err and "invalid signing secret" in err
    queue(db, 1)
    rc, out, err = run("notify", "dispatch", "--once", "--db", db, "--config", cfg)
    outputs += [out, err]
    for args in (["status"], ["status", "--json"]):
        rc, out, err = run("notify", *args, "--db", db, "--config", cfg)
        outputs += [out, err]
        assert "[REDACTED]" in out
    text = "\n".join(outputs)
    assert secret not in text and secret[6:] not in text


def test_missing_credential_names_the_variable(tmp_path, db, receiver, run, monkeypatch):
    monkeypatch.delenv("LW_TEST_UNSET_VAR", raising=False)
    cfg = write_config(tmp_path, receiver.url, credentials='{ secret = "LW_TEST_UNSET_VAR" }')
    rc, _, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    assert rc == 2 and "LW_TEST_UNSET_VAR" in err and "not set" in err
    assert receiver.request_count == 0


@pytest.mark.parametrize("extra, needles", [
    ('[[notify.targets]]\nname = "x"\nkind = "webhok"\nurl = "http://127.0.0.1:1/"\n',
     ["notify.targets[1].kind", "did you mean 'webhook'"]),
    ('[[notify.rules]]\non = ["incident.opened"]\ntargets = ["sco"]\n',
     ["notify.rules[0].targets", "did you mean 'soc'"]),
    ('[[notify.rules]]\non = ["incident.openned"]\ntargets = ["soc"]\n',
     ["notify.rules[0].on", "did you mean 'incident.opened'"]),
    ('[[notify.rules]]\non = ["deadline.approaching"]\nbefore = ["12 hours"]\ntargets = ["soc"]\n',
     ["notify.rules[0].before", "not a duration"]),
    (('[[notify.targets]]\nname = "y"\nkind = "slack"\nurl = "http://127.0.0.1:1/"\n'
      'credentials = { url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX" }\n'),
     ["notify.targets[1].credentials.url", "must name an environment variable"]),
])
def test_config_errors_name_file_line_and_key(tmp_path, db, receiver, run, extra, needles):
    cfg = write_config(tmp_path, receiver.url)
    with open(cfg, "a") as f:
        f.write("\n" + extra)
    rc, _, err = run("notify", "status", "--db", db, "--config", cfg)
    assert rc == 2
    assert "leakwatch.toml:" in err
    for n in needles:
        assert n in err, err
    assert "hooks.slack.com" not in err  # a credential pasted into the config is not echoed


def test_rows_for_a_target_missing_from_the_config_stay_queued(tmp_path, db, receiver, run):
    cfg = write_config(tmp_path, receiver.url)
    with Store.open(db) as s:
        enqueue(s.con, Message("old-soc", "webhook", "incident.opened", "incident.opened:1:old-soc:", {"type": "x"}),
                now=datetime.now(UTC))
    rc, out, err = run("notify", "dispatch", "--once", "--db", db, "--config", cfg)
    assert rc == 4 and "1 notification(s) for target 'old-soc' left queued" in err and "1 still queued" in out
    rc, out, _ = run("notify", "status", "--json", "--db", db, "--config", cfg)
    assert json.loads(out)["by_target"]["old-soc"]["pending"] == 1


def test_canary_with_a_missing_or_empty_credential_is_a_config_error_and_sends_nothing(run, db, tmp_path, monkeypatch,
                                                                                        receiver):
    monkeypatch.delenv(SECRET_VAR, raising=False)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f"{SECRET_VAR} = \n")
    secrets.chmod(0o600)
    cfg = write_config(tmp_path, receiver.url, extra=f'secrets_file = "{secrets}"')
    rc, out, err = run("notify", "test", "--target", "soc", "--config", cfg, "--db", db)
    assert rc == 2, (out, err)
    assert f"credential variable {SECRET_VAR} is not set" in err
    assert "quote" not in err
    assert receiver.deliveries == []
    with Store.open(db, read_only=True) as s:
        assert s.con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


def test_a_secret_pasted_as_the_variable_name_is_not_echoed(tmp_path, db, receiver, run):
    pasted = "whsec_" + "Q2FuYXJ5U2lnQ0FOQVJZU0VDUkVUMTIzNDU2Nzg5"
    cfg = write_config(tmp_path, receiver.url, credentials=f'{{ secret = "{pasted}" }}')
    rc, out, err = run("notify", "test", "--target", "soc", "--db", db, "--config", cfg)
    assert rc == 2 and "not hold the value itself" in err
    assert pasted not in out + err and pasted[6:] not in out + err
    assert receiver.request_count == 0
