"""The Standard Webhooks target and its receiver side: the exact headers and signature leakwatch
sends (recomputed here with hmac/base64, independently of leakwatch's signing code), what a
verifying receiver refuses, and ``leakwatch webhook verify``."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import textwrap
import time

import pytest
import requests

from leakwatch import cli
from leakwatch.config import load_config
from leakwatch.notify.base import Message
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.notify.secrets import SecretStore
from leakwatch.notify.targets import build_target
from leakwatch.notify.webhook_verify import WebhookVerifyError, new_secret, sign, verify

if "leakwatch.commands.notify" not in cli.COMMAND_MODULES:  # until the lead wires the command in
    cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, "leakwatch.commands.notify")

SECRET_VAR = "LW_TEST_WEBHOOK_SECRET"


def expected_signature(secret: str, msg_id: str, ts: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body,
                                             hashlib.sha256).digest()).decode()


@pytest.fixture
def secret(monkeypatch):
    value = new_secret()
    monkeypatch.setenv(SECRET_VAR, value)
    return value


def target_for(tmp_path, url: str, options: str = ""):
    path = tmp_path / "leakwatch.toml"
    path.write_text(textwrap.dedent(f"""\
        [[notify.targets]]
        name = "soc"
        kind = "webhook"
        url = "{url}"
        credentials = {{ secret = "{SECRET_VAR}" }}
        {options}
        """).replace("[[notify.targets]]", "[notify]\n[[notify.targets]]", 1))
    cfg = load_config(path, env={})
    return build_target(cfg.notify.targets[0], SecretStore.from_config(cfg))


def test_published_test_vector():
    # The example of the Standard Webhooks specification.
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_exact_headers_and_signature(tmp_path, secret):
    with WebhookReceiver(None) as rx:  # records without checking: we check by hand
        target = target_for(tmp_path, rx.url, 'options = { headers = { "X-Team" = "soc" } }')
        body = target.render("canary", None, {"canary": True, "target": "soc"})
        msg = Message("soc", "webhook", "canary", "canary:soc:abc123", body)
        before = int(time.time())
        res = target.send(msg)
        after = int(time.time())
    assert res.outcome == "delivered" and res.status == 200
    d = rx.deliveries[0]
    h = {k.lower(): v for k, v in d.headers.items()}
    assert h["webhook-id"] == "canary:soc:abc123"
    assert before <= int(h["webhook-timestamp"]) <= after
    assert h["webhook-signature"] == expected_signature(secret, h["webhook-id"], h["webhook-timestamp"], d.body)
    assert h["content-type"] == "application/json" and h["x-team"] == "soc"
    assert h["user-agent"].startswith("leakwatch/")
    assert res.remote_id == d.delivery_id
    payload = json.loads(d.body)
    assert payload["type"] == "canary" and payload["data"]["canary"] is True
    assert payload["data"]["subject"].startswith("[leakwatch canary]")
    assert secret not in d.body.decode() and secret[6:] not in json.dumps(d.headers)


def test_webhook_id_is_stable_across_retries_and_the_timestamp_is_not(tmp_path, secret):
    with WebhookReceiver(secret) as rx:
        target = target_for(tmp_path, rx.url)
        msg = Message("soc", "webhook", "incident.opened", "incident.opened:7:soc:", {"type": "incident.opened", "data": {}})
        rx.fail_next(500)
        assert target.send(msg).outcome == "retry"
        time.sleep(1.05)
        assert target.send(msg).outcome == "delivered"
        time.sleep(1.05)
        again = target.send(msg)   # a resend after an unknown outcome: absorbed by the receiver
    assert again.outcome == "delivered" and again.remote_id == rx.deliveries[0].delivery_id
    ids = [i for i, _ in rx.log]
    stamps = [int(t) for _, t in rx.log]
    assert ids == ["incident.opened:7:soc:"] * 3
    assert stamps[0] < stamps[1] < stamps[2]   # signed afresh each time
    assert rx.rejected == [] and len(rx.deliveries) == 1 and rx.duplicates["incident.opened:7:soc:"] == 1


def test_receiver_rejects_a_bad_signature_and_an_old_or_future_timestamp(secret):
    body = b'{"type":"canary"}'
    with WebhookReceiver(secret) as rx:
        def post(headers):
            return requests.post(rx.url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=5)

        now = int(time.time())
        good = {"webhook-id": "m1", "webhook-timestamp": str(now)}
        r = post({**good, "webhook-signature": sign(new_secret(), "m1", now, body)})       # another secret
        assert r.status_code == 401 and "does not match" in r.json()["error"]
        r = post({**good, "webhook-signature": sign(secret, "m1", now, body + b" ")})      # body changed
        assert r.status_code == 401
        old = now - 301
        r = post({"webhook-id": "m2", "webhook-timestamp": str(old), "webhook-signature": sign(secret, "m2", old, body)})
        assert r.status_code == 401 and "old" in r.json()["error"]
        future = now + 400
        r = post({"webhook-id": "m3", "webhook-timestamp": str(future),
                  "webhook-signature": sign(secret, "m3", future, body)})
        assert r.status_code == 401 and "future" in r.json()["error"]
        r = post({"webhook-id": "m4", "webhook-timestamp": str(now)})
        assert r.status_code == 401 and "missing" in r.json()["error"]
        r = post({**good, "webhook-signature": "v1,AAAA " + sign(secret, "m1", now, body)})  # rotation: any v1 may match
        assert r.status_code == 200
        assert rx.ids() == ["m1"] and len(rx.rejected) == 5


def test_verify_function():
    s = new_secret()
    body = b'{"a":1}'
    h = {"Webhook-Id": "x", "Webhook-Timestamp": "1000", "Webhook-Signature": sign(s, "x", 1000, body)}
    assert verify(s, h, body, now=1000 + 299) == "x"
    with pytest.raises(WebhookVerifyError, match="old"):
        verify(s, h, body, now=1000 + 301)
    with pytest.raises(WebhookVerifyError, match="no v1"):
        verify(s, {**h, "Webhook-Signature": "v1a,abc"}, body, now=1000)
    with pytest.raises(WebhookVerifyError, match="not integer"):
        verify(s, {**h, "Webhook-Timestamp": "soon"}, body, now=1000)
    for huge in (str(10**400), "-5"):  # 10**400 overflowed a float: exit 70
        with pytest.raises(WebhookVerifyError, match="out of range"):
            verify(s, {**h, "Webhook-Timestamp": huge}, body, now=1000)
    with pytest.raises(ValueError, match="tolerance"):
        verify(s, h, body, now=1000 + 3600, tolerance=float("nan"))  # nan let an hour-old request through


@pytest.fixture
def cli_run(capsys):
    def run(*args):
        capsys.readouterr()
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return int(rc), out, err

    return run


def test_webhook_verify_cli(tmp_path, secret, cli_run):
    body = b'{"type":"incident.opened","data":{"incident":{"id":3}}}'
    ts = int(time.time())
    headers = {"webhook-id": "incident.opened:3:soc:", "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, "incident.opened:3:soc:", ts, body)}
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "headers.txt").write_text("POST /hook HTTP/1.1\n" + "".join(f"{k}: {v}\n" for k, v in headers.items()))
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    rc, out, err = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, "--headers", tmp_path / "headers.txt",
                           "--body", tmp_path / "body.json")
    assert rc == 0 and "valid: webhook-id incident.opened:3:soc:" in out, err
    rc, out, _ = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, "--headers", tmp_path / "headers.json",
                         "--body", tmp_path / "body.json")
    assert rc == 0
    args = []
    for k, v in headers.items():
        args += ["--header", f"{k}: {v}"]
    rc, _, _ = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, *args, "--body", tmp_path / "body.json")
    assert rc == 0
    (tmp_path / "tampered.json").write_bytes(body.replace(b"3", b"4"))
    rc, out, err = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, *args, "--body", tmp_path / "tampered.json")
    assert rc == 1 and "does NOT verify" in err and "signature does not match" in err
    rc, _, err = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, *args, "--body", tmp_path / "body.json",
                         "--now", ts + 3600)
    assert rc == 1 and "old" in err
    rc, _, err = cli_run("webhook", "verify", "--secret-env", "LW_NO_SUCH_VAR_SET", *args, "--body", tmp_path / "body.json")
    assert rc == 2 and "LW_NO_SUCH_VAR_SET" in err
    for opt, value in (("--tolerance", "nan"), ("--tolerance", "inf"), ("--tolerance", "-5"), ("--now", "nan")):
        rc, _, err = cli_run("webhook", "verify", "--secret-env", SECRET_VAR, *args, "--body", tmp_path / "body.json",
                             opt, value)
        assert rc == 2 and opt in err, (opt, value, err)
    rc, out, _ = cli_run("webhook", "verify", "--help")
    assert rc == 0 and "exit codes:" in out and "examples:" in out


def test_a_token_in_the_target_url_is_cut_from_errors(tmp_path, secret):
    """A webhook URL may carry its own credential (?token=…, user:password@, a token path
    segment); the HTTP library quotes the URL when the endpoint is down."""
    token = "sk-proj-" + "Q8zx" * 10
    seg = "hk9" * 7
    target = target_for(tmp_path, f"http://bob:Hunter2pass@127.0.0.1:1/{seg}/hook?token={token}&v=1")
    body = target.render("canary", None, {"canary": True, "target": "soc"})
    res = target.send(Message("soc", "webhook", "canary", "canary:soc:tok", body))
    assert res.outcome == "retry" and res.error
    assert token not in res.error and seg not in res.error and "Hunter2pass" not in res.error
    assert "[REDACTED]" in res.error
