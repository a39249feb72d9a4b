"""Settings: defaults, which file is read, environment overrides, and errors that name the key."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from leakwatch.config import (
    Config,
    ConfigError,
    CustomFormat,
    describe,
    env_name,
    find_config_file,
    load_config,
)
from leakwatch.detect.egress import default_registry_path, load_registry
from leakwatch.errors import UsageError


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    """No ./leakwatch.toml unless a test writes one."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


FULL = """\
[residency]
allowed_jurisdictions = ["eu", "UK", "CH"]

[egress]
registry = "my_endpoints.yaml"
approved_gateways = ["https://AI-GW.example.com:443", "*.llm-gw.example.net"]
gateway_sources = ["/var/log/ai-gateway/*.log", "gw-*.jsonl"]

[patterns]
bulk_then_ai_window_minutes = 30
bulk_min_rows = 500
bulk_objects = ["Contact", "Lead", "Case"]
api_volume_factor = 4
api_volume_min_events = 20

[cdn]
ai_paths = ['^/assistant/', '^/api/v\\d+/genai/']
allowed_regions = ["fra", "AMS"]

[ner]
enabled = true

[[formats.custom]]
name = "apigee"
regex = '^(?P<ts>\\S+) (?P<client_ip>\\S+) (?P<method>[A-Z]+) (?P<path>\\S+)'
paths = ["apigee-*.log"]

[[formats.custom]]
name = "legacy-pos"
regex = 'POS (?P<store>\\d+): (?P<message>.*)'
paths = "/srv/pos/**/*.txt"
"""


def test_defaults():
    c = load_config(env={})
    assert c == Config.default() and c.source is None
    assert c.residency.allowed_jurisdictions == ("EU",)
    assert c.egress.registry is None and c.egress.registry_path == default_registry_path()
    assert c.egress.approved_gateways == () and c.egress.gateway_sources == ()
    p = c.patterns
    assert (p.bulk_then_ai_window_minutes, p.bulk_min_rows, p.bulk_objects, p.api_volume_factor,
            p.api_volume_min_events) == (60, 1000, ("Contact", "Lead", "Account"), 3.0, 50)
    assert c.cdn.is_ai_path("/recommendations/123") and c.cdn.is_ai_path("/ai/chat")
    assert not c.cdn.is_ai_path("/cart/ai/") and not c.cdn.is_ai_path("/aisle/3")
    assert c.cdn.allowed_regions == () and c.formats.custom == () and c.ner.enabled is False
    # The default registry is the shipped one and loads.
    assert load_registry(c.egress.registry_path).endpoints


def test_full_file(tmp_path):
    write(tmp_path / "conf" / "my_endpoints.yaml", "endpoints:\n  - {id: a, vendor: A, hosts: [a.x.com], jurisdiction: US}\n")
    f = write(tmp_path / "conf" / "leakwatch.toml", FULL)
    c = load_config(f, env={})
    assert c.source == f.resolve()
    assert c.residency.allowed_jurisdictions == ("EU", "UK", "CH")
    # Relative to the config file, not the working directory.
    assert c.egress.registry == (tmp_path / "conf" / "my_endpoints.yaml").resolve()
    assert c.egress.approved_gateways == ("ai-gw.example.com", "*.llm-gw.example.net")
    assert c.egress.is_approved_gateway("ai-gw.example.com")
    assert c.egress.is_approved_gateway("eu.llm-gw.example.net")
    assert not c.egress.is_approved_gateway("llm-gw.example.net.evil.com")
    assert not c.egress.is_approved_gateway("api.openai.com")
    assert c.egress.is_gateway_source("/var/log/ai-gateway/access.log")
    assert c.egress.is_gateway_source("/data/in/gw-2024-03-11.jsonl")  # no '/': the file name
    assert not c.egress.is_gateway_source("/var/log/nginx/access.log")
    p = c.patterns
    assert (p.bulk_then_ai_window_minutes, p.bulk_min_rows, p.bulk_objects, p.api_volume_factor,
            p.api_volume_min_events) == (30, 500, ("Contact", "Lead", "Case"), 4.0, 20)
    assert isinstance(p.api_volume_factor, float)
    assert c.cdn.is_ai_path("/api/v2/genai/x") and not c.cdn.is_ai_path("/ai/chat")
    assert c.cdn.allowed_regions == ("FRA", "AMS")
    assert c.ner.enabled is True
    apigee, pos = c.formats.custom
    assert apigee == CustomFormat("apigee", apigee.regex, ("apigee-*.log",))
    assert apigee.compiled.match("2024-03-11T16:00:00Z 10.0.0.1 GET /v1/x").group("method") == "GET"
    assert pos.paths == ("/srv/pos/**/*.txt",)
    assert c.formats.for_path("/logs/apigee-eu.log") is apigee
    assert c.formats.for_path("/logs/other.log") is None


def test_settings_are_frozen():
    c = Config.default()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.patterns.bulk_min_rows = 1  # type: ignore[misc]


# --- which file ---------------------------------------------------------------------------------


def test_file_lookup_order(tmp_path):
    write(tmp_path / "leakwatch.toml", "[patterns]\nbulk_min_rows = 1\n")
    named = write(tmp_path / "named.toml", "[patterns]\nbulk_min_rows = 2\n")
    explicit = write(tmp_path / "explicit.toml", "[patterns]\nbulk_min_rows = 3\n")
    assert load_config(env={}).patterns.bulk_min_rows == 1  # ./leakwatch.toml
    env = {"LEAKWATCH_CONFIG": str(named)}
    assert load_config(env=env).patterns.bulk_min_rows == 2  # $LEAKWATCH_CONFIG beats ./
    assert load_config(explicit, env=env).patterns.bulk_min_rows == 3  # --config beats both
    assert find_config_file(None, {}) == Path("leakwatch.toml")


def test_named_files_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="--config .*nope.toml: no such file"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="LEAKWATCH_CONFIG=.*gone.toml: no such file"):
        load_config(env={"LEAKWATCH_CONFIG": str(tmp_path / "gone.toml")})


# --- environment --------------------------------------------------------------------------------


def test_env_overrides_file(tmp_path):
    f = write(tmp_path / "c.toml", FULL.replace('registry = "my_endpoints.yaml"\n', ""))
    env = {
        "LEAKWATCH_PATTERNS_BULK_MIN_ROWS": "2_500",
        "LEAKWATCH_RESIDENCY_ALLOWED_JURISDICTIONS": "eea, uk",
        "LEAKWATCH_EGRESS_APPROVED_GATEWAYS": '["gw.example.org"]',
        "LEAKWATCH_CDN_AI_PATHS": r"^/bot/(\d+,\d+)?",  # one regex: its comma is not a separator
        "LEAKWATCH_PATTERNS_API_VOLUME_FACTOR": "2.5",
        "LEAKWATCH_NER_ENABLED": "no",
        "LEAKWATCH_FORMATS_CUSTOM": '[{name = "x", regex = "(?P<a>.)", paths = ["*.x"]}]',
        "LEAKWATCH_RULES": "/somewhere/else",  # not a setting: ignored
        "LEAKWATCH_CONFIG": str(tmp_path / "unused.toml") + "-ignored-when-path-given",
        "HOME": "/root",
    }
    c = load_config(f, env=env)
    assert c.patterns.bulk_min_rows == 2500
    assert c.patterns.bulk_then_ai_window_minutes == 30  # from the file
    assert c.residency.allowed_jurisdictions == ("EEA", "UK")
    assert c.egress.approved_gateways == ("gw.example.org",)
    assert c.egress.gateway_sources == ("/var/log/ai-gateway/*.log", "gw-*.jsonl")
    assert c.cdn.ai_paths == (r"^/bot/(\d+,\d+)?",)
    assert c.patterns.api_volume_factor == 2.5 and c.ner.enabled is False
    assert [f.name for f in c.formats.custom] == ["x"]


def test_env_errors():
    with pytest.raises(ConfigError, match="LEAKWATCH_PATTERNS_BULK_MIN_ROWS: expected an integer, got 'many'"):
        load_config(env={"LEAKWATCH_PATTERNS_BULK_MIN_ROWS": "many"})
    with pytest.raises(ConfigError) as ei:
        load_config(env={"LEAKWATCH_PATTERNS_BULK_MIN_ROW": "5"})
    assert "LEAKWATCH_PATTERNS_BULK_MIN_ROW" in str(ei.value) and "did you mean 'LEAKWATCH_PATTERNS_BULK_MIN_ROWS'" in str(ei.value)
    with pytest.raises(ConfigError, match="LEAKWATCH_PATTERNS_BULK_MIN_ROWS: 0 is out of range"):
        load_config(env={"LEAKWATCH_PATTERNS_BULK_MIN_ROWS": "0"})
    with pytest.raises(ConfigError, match="LEAKWATCH_CDN_AI_PATHS.*invalid regex"):
        load_config(env={"LEAKWATCH_CDN_AI_PATHS": "^/ai/(unclosed"})
    with pytest.raises(ConfigError, match="LEAKWATCH_NER_ENABLED: expected true or false"):
        load_config(env={"LEAKWATCH_NER_ENABLED": "maybe"})
    with pytest.raises(ConfigError, match="LEAKWATCH_EGRESS_APPROVED_GATEWAYS: not a TOML array"):
        load_config(env={"LEAKWATCH_EGRESS_APPROVED_GATEWAYS": "[unterminated"})


# --- file errors --------------------------------------------------------------------------------


def _err(tmp_path: Path, text: str) -> str:
    f = write(tmp_path / "leakwatch.toml", text)
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={})
    assert isinstance(ei.value, UsageError)  # the CLI maps it to exit code 2
    msg = str(ei.value)
    assert str(f.resolve()) in msg
    return msg


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[patterns]\nbulk_min_row = 3\n", [":2: patterns.bulk_min_row", "did you mean 'bulk_min_rows'"]),
        ("[pattern]\nbulk_min_rows = 3\n", ["unknown section 'pattern'", "did you mean 'patterns'"]),
        ("[patterns]\n\nbulk_min_rows = \"1000\"\n", [":3: patterns.bulk_min_rows", "expected an integer, got string '1000'"]),
        ("[patterns]\nbulk_min_rows = true\n", ["expected an integer, got boolean"]),
        ("[patterns]\napi_volume_factor = 0.5\n", ["patterns.api_volume_factor", "out of range"]),
        ("[residency]\nallowed_jurisdictions = \"EU\"\n", ["residency.allowed_jurisdictions", "expected an array of strings"]),
        ("[residency]\nallowed_jurisdictions = [\"E U\"]\n", ["not a jurisdiction code"]),
        ("[egress]\nregistry = \"missing.yaml\"\n", ["egress.registry", "no such file"]),
        ("[egress]\napproved_gateways = [\"not a host\"]\n", ["egress.approved_gateways", "not a host name"]),
        ("[patterns]\nbulk_objects = [\"Contact\", \"Lead Object\"]\n", ["not a Salesforce object name"]),
        ("[cdn]\nai_paths = ['^/ai/(']\n", ["cdn.ai_paths[0]", "invalid regex"]),
        # Run on Python's re over log lines: one crafted line held a scan for minutes.
        ("[cdn]\nai_paths = ['^/(a+)+/gen']\n", ["cdn.ai_paths[0]", "nested unbounded repetition"]),
        ("[[formats.custom]]\nname = \"m\"\nregex = '^(?P<msg>([a-z.@]+\\s?)+)$'\npaths = [\"*.log\"]\n",
         ["formats.custom[0].regex", "nested unbounded repetition"]),
        ("[ner]\nenabled = \"yes\"\n", ["ner.enabled", "expected true or false"]),
        ("egress = 3\n", ["[egress]", "expected a table"]),
        ("[[formats.custom]]\nname = \"a\"\nregex = \"x\"\npaths = [\"*.log\"]\n", ["formats.custom[0].regex", "named groups"]),
        ("[[formats.custom]]\nname = \"a\"\nregx = \"(?P<a>x)\"\npaths = [\"*.log\"]\n", ["formats.custom[0]", "did you mean 'regex'"]),
        ("[[formats.custom]]\nname = \"a\"\nregex = \"(?P<a>x)\"\n", ["formats.custom[0]", "missing key 'paths'"]),
        ("[[formats.custom]]\nname = \"A b\"\nregex = \"(?P<a>x)\"\npaths = [\"*\"]\n", ["formats.custom[0].name"]),
        (("[[formats.custom]]\nname = \"a\"\nregex = \"(?P<a>x)\"\npaths = [\"*\"]\n"
          "[[formats.custom]]\nname = \"a\"\nregex = \"(?P<b>y)\"\npaths = [\"*\"]\n"), ["formats.custom[1].name", "defined twice"]),
        ("[patterns\nbulk_min_rows = 3\n", ["invalid TOML", "line 1"]),
    ],
)
def test_file_errors(tmp_path, text, needles):
    msg = _err(tmp_path, text)
    for n in needles:
        assert n in msg, msg


def test_describe_documents_every_field():
    rows = describe()
    keys = {r[0] for r in rows}
    assert {"residency.allowed_jurisdictions", "egress.registry", "egress.approved_gateways",
            "egress.gateway_sources", "patterns.bulk_then_ai_window_minutes", "patterns.bulk_min_rows",
            "patterns.bulk_objects", "patterns.api_volume_factor", "patterns.api_volume_min_events",
            "cdn.ai_paths", "cdn.allowed_regions", "formats.custom", "ner.enabled"} <= keys
    for key, var, _default, doc in rows:
        section, name = key.split(".")
        assert var == env_name(section, name) and var.startswith("LEAKWATCH_")
        assert len(doc) > 30, key


def test_a_byte_order_mark_is_not_an_invalid_statement(tmp_path):
    f = tmp_path / "leakwatch.toml"
    f.write_bytes(b"\xef\xbb\xbf[patterns]\nbulk_min_rows = 3\n")  # as Notepad saves UTF-8
    assert load_config(f, env={}).patterns.bulk_min_rows == 3


def test_a_folder_given_as_the_config_is_said_to_be_one(tmp_path):
    with pytest.raises(ConfigError, match="a folder, not a file"):
        load_config(tmp_path, env={})
