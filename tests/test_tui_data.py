"""The console's paged findings queries (``leakwatch.tui.data``) against a brute-force reference.

A database of ~2,400 findings is stored through the real ingest path (``Store.insert_findings``)
and grouped into incidents with ``book.open_incident``; sort keys are drawn from few values so
that ties are everywhere and only the ``finding_id`` tie-break tells rows apart. The reference
reads every row once and filters and sorts in Python; every page the module returns must be the
reference's rows, in the reference's order, walking forwards, backwards, and from random cursors.
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from leakwatch.flows import SUBJECT_ENTITIES
from leakwatch.incidents import book
from leakwatch.store import Store
from leakwatch.tui import data
from leakwatch.tui.data import FindingFilter

SEED = 20240311
RAW_MARK = "RAWVALUE-"  # every raw value stored starts with this; nothing may ever show it

# (rule_id, entity, severity, rank)
RULES = [
    ("email", "EMAIL_ADDRESS", "medium", 2),
    ("ipv4_public", "IP_ADDRESS", "low", 1),
    ("sf_record_id", "SALESFORCE_RECORD_ID", "low", 1),
    ("person_name", "PERSON_NAME", "medium", 2),
    ("payment_card", "CREDIT_CARD", "high", 3),
    ("openai_api_key", "OPENAI_API_KEY", "critical", 4),
    ("uuid_like", "INTERNAL_ID", "info", 0),
]
PATHS = ["logs/a.jsonl", "logs/b.csv", "logs/mule-app-x.log", "logs/c_d.log"]
FIELD_PATHS = ["body.messages[0].content", "customer_email", "customerXemail", "URL", "query.user", None]
MASKS = ["j***@e******.com", "100%_off", "203.x.x.x", "001************", "J***", "************1111",
         "sk-proj-…[164]", "a_b***"]
DESTS = [(None, None, None, None), ("OpenAI", "us", "US", True), ("OpenAI", "eu", "EU", False),
         ("Anthropic", "us", "US", True), ("Mistral AI", "eu", "EU", False)]
SF = [(None, None), ("Contact", "Email"), ("Contact", None), ("Lead", "Email"), ("Account", "Phone")]
TS = [datetime(2024, 3, 11, 9, m, tzinfo=UTC).timestamp() for m in (0, 0, 5, 7)] + [math.nan]


def _batch(rng: random.Random, n: int, line0: int) -> dict:
    cols: dict[str, list] = defaultdict(list)
    for k in range(n):
        rule = rng.choice(RULES)
        vendor, region, juris, viol = rng.choice(DESTS)
        obj, fld = rng.choice(SF)
        cols["line"].append(line0 + k // 2)  # two findings per record on average
        start = rng.randrange(0, 300)
        cols["start_byte"].append(start)
        cols["end_byte"].append(start + rng.randrange(5, 40))
        cols["rule_id"].append(rule[0])
        cols["entity"].append(rule[1])
        base, val, ctx = rng.choice((0.5, 0.75)), rng.choice((0.0, 0.2, -0.2)), rng.choice((0.0, 0.15))
        cols["confidence"].append(max(0.0, min(1.0, base + val + ctx)))
        cols["score_base"].append(base)
        cols["score_validator"].append(val)
        cols["score_context"].append(ctx)
        cols["severity"].append(rule[2])
        cols["severity_rank"].append(rule[3])
        fp = rng.choice(FIELD_PATHS)
        cols["field"].append(fp.lower().replace(".", "") if fp else None)
        cols["field_path"].append(fp)
        cols["masked"].append(rng.choice(MASKS))
        cols["value_hash"].append(f"{rng.randrange(60):064x}")
        cols["raw_value"].append(f"{RAW_MARK}{rng.randrange(10**9)}")
        cols["ts"].append(rng.choice(TS))
        cols["format"].append("jsonl")
        cols["dest_vendor"].append(vendor)
        cols["dest_region"].append(region)
        cols["dest_jurisdiction"].append(juris)
        cols["dest_host"].append(None if vendor is None else f"api.{vendor.split()[0].lower()}.example")
        cols["residency_violation"].append(-1 if viol is None else int(viol))
        cols["sf_object"].append(obj)
        cols["sf_field"].append(fld)
    out = dict(cols)
    for key in ("line", "start_byte", "end_byte", "severity_rank"):
        out[key] = np.array(out[key], dtype=np.int64 if key == "line" else np.int32)
    out["severity_rank"] = out["severity_rank"].astype(np.int8)
    for key in ("confidence", "score_base", "score_validator", "score_context", "ts"):
        out[key] = np.array(out[key], dtype=np.float64)
    out["residency_violation"] = np.array(out["residency_violation"], dtype=np.int8)
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """(store, every row as a dict, the incident ids); the store stays open for the module."""
    path = tmp_path_factory.mktemp("tuidata") / "f.duckdb"
    rng = random.Random(SEED)
    store = Store.open(path)
    # Two scans, so created_at (the time fallback) takes two values.
    for scan in range(2):
        scan_id = store.begin_scan(["scan"], "rules", 1)
        for path_i, p in enumerate(PATHS):
            sid = store.begin_source(scan_id, p, 1, 1, None)
            store.insert_findings(scan_id, sid, p, _batch(rng, 300, 1 + scan * 1000 + path_i))
            store.finish_source(sid, "ok", 1, 300, None)
        store.finish_scan(scan_id, "ok", n_files=len(PATHS), n_bytes=1, n_records=1)
    ids = [r[0] for r in store.con.execute("SELECT finding_id FROM findings ORDER BY finding_id").fetchall()]
    now = datetime(2024, 3, 12, tzinfo=UTC)
    inc_a = book.open_incident(store, title="A", finding_ids=ids[::7], actor="t", now=now)
    inc_b = book.open_incident(store, title="B", finding_ids=ids[3::11], actor="t", now=now + timedelta(minutes=1))
    cur = store.con.execute(
        "SELECT f.*, coalesce(f.ts, f.created_at) AS t, i.incident_id FROM findings f "
        "LEFT JOIN incident_findings i USING (finding_id)")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    yield store, rows, (inc_a, inc_b)
    store.close()


# -- the reference -----------------------------------------------------------------------------

def _matches(r: dict, f: FindingFilter) -> bool:
    for name in ("entity", "rule_id", "sf_object", "sf_field", "dest_vendor", "dest_region", "source_path"):
        want = getattr(f, name)
        if want is None:
            continue
        if want == "" and name in ("sf_object", "sf_field", "dest_vendor", "dest_region"):
            if r[name] is not None:
                return False
        elif r[name] != want:
            return False
    if f.min_severity_rank is not None and r["severity_rank"] < f.min_severity_rank:
        return False
    if f.incident_id is not None and r["incident_id"] != f.incident_id:
        return False
    if f.search and f.search.strip():
        s = f.search.strip().lower()
        if s not in (r["masked"] or "").lower() and s not in (r["field_path"] or "").lower():
            return False
    return True


_REF_KEYS = {
    "severity": [("severity_rank", True), ("finding_id", True)],
    "time": [("t", True), ("finding_id", True)],
    "entity": [("entity", False), ("finding_id", False)],
    "file": [("source_path", False), ("line", False), ("start_byte", False), ("finding_id", False)],
}


def reference(rows: list[dict], f: FindingFilter, sort: str) -> list[dict]:
    out = [r for r in rows if _matches(r, f)]
    for key, desc in reversed(_REF_KEYS[sort]):  # stable sorts, least significant key first
        out.sort(key=lambda r: r[key], reverse=desc)
    return out


def _as_row(r: dict) -> tuple:
    return tuple(r[c] for c in data.ROW_FIELDS)


def _random_filter(rng: random.Random, rows: list[dict], incidents) -> FindingFilter:
    pick = lambda col: rng.choice(rows)[col]  # a value that exists
    choices = {
        "entity": lambda: pick("entity"),
        "rule_id": lambda: rng.choice([pick("rule_id"), "no_such_rule"]),
        "min_severity_rank": lambda: rng.randrange(0, 5),
        "sf_object": lambda: rng.choice(["Contact", "Lead", "", "Nope"]),
        "sf_field": lambda: rng.choice(["Email", ""]),
        "dest_vendor": lambda: rng.choice(["OpenAI", "Anthropic", ""]),
        "dest_region": lambda: rng.choice(["us", "eu"]),
        "source_path": lambda: rng.choice(PATHS),
        "incident_id": lambda: rng.choice(incidents),
        "search": lambda: rng.choice(["@E", "%_", "x.x", "content", "r_e", "sk-proj", "  J*  ", "zzz", "_"]),
    }
    names = rng.sample(sorted(choices), rng.choice((0, 1, 1, 2, 3)))
    return FindingFilter(**{n: choices[n]() for n in names})


# -- tests ---------------------------------------------------------------------------------------

def test_the_fixture_has_ties_everywhere(db):
    """The test is only as good as its data: many rows share every sort key but finding_id."""
    _, rows, _ = db
    assert len(rows) == 2400
    assert Counter(r["severity_rank"] for r in rows).most_common(1)[0][1] > 200
    assert Counter(r["t"] for r in rows).most_common(1)[0][1] > 200
    assert Counter((r["source_path"], r["line"], r["start_byte"]) for r in rows).most_common(1)[0][1] >= 2
    assert any(r["ts"] is None for r in rows) and any(r["incident_id"] for r in rows)


@pytest.mark.parametrize("sort", data.SORT_NAMES)
def test_walking_forward_gives_the_reference_order(db, sort):
    store, rows, incidents = db
    rng = random.Random(f"{SEED}-fwd-{sort}")
    for _ in range(12):
        f = _random_filter(rng, rows, incidents)
        want = [_as_row(r) for r in reference(rows, f, sort)]
        # Small pages where few rows match; at most ~30 pages a walk (each is a query).
        limit = max(rng.choice((1, 7, 50, 333)), -(-len(want) // 30))
        got, after, pages = [], None, 0
        while True:
            p = data.page(store.con, f, sort, after=after, limit=limit)
            assert len(p.rows) <= limit and len(p.keys) == len(p.rows)
            assert p.has_prev == (pages > 0 and after is not None)
            got += p.rows
            pages += 1
            assert pages <= len(want) + 1, "paging does not advance"
            if not p.has_next:
                break
            assert len(p.rows) == limit, "a page short of the limit must be the last"
            after = p.last_key
        assert got == want, (f, sort, limit)
        assert data.count(store.con, f) == len(want)


@pytest.mark.parametrize("sort", data.SORT_NAMES)
def test_walking_backward_from_the_end_gives_the_reference_order(db, sort):
    store, rows, incidents = db
    rng = random.Random(f"{SEED}-bwd-{sort}")
    for _ in range(8):
        f = _random_filter(rng, rows, incidents)
        want = [_as_row(r) for r in reference(rows, f, sort)]
        limit = max(rng.choice((1, 9, 64)), -(-len(want) // 30))
        p = data.last_page(store.con, f, sort, limit=limit)
        assert not p.has_next
        got = list(p.rows)
        while p.has_prev:
            assert len(got) <= len(want), "paging does not advance"
            assert len(p.rows) == limit
            p = data.page(store.con, f, sort, before=p.first_key, limit=limit)
            assert p.has_next
            got = p.rows + got
        assert got == want, (f, sort, limit)


@pytest.mark.parametrize("sort", data.SORT_NAMES)
def test_pages_from_random_cursors(db, sort):
    """A cursor taken from any row gives exactly the rows after (or before) it."""
    store, rows, incidents = db
    rng = random.Random(f"{SEED}-cur-{sort}")
    for _ in range(25):
        f = _random_filter(rng, rows, incidents)
        ref = reference(rows, f, sort)
        if not ref:
            assert data.page(store.con, f, sort).rows == []
            continue
        whole = data.page(store.con, f, sort, limit=len(ref))
        assert [r[0] for r in whole.rows] == [r["finding_id"] for r in ref]
        i = rng.randrange(len(ref))
        limit = rng.choice((1, 5, 40))
        after = data.page(store.con, f, sort, after=whole.keys[i], limit=limit)
        assert after.rows == [_as_row(r) for r in ref[i + 1:i + 1 + limit]]
        assert after.has_next == (i + 1 + limit < len(ref))
        before = data.page(store.con, f, sort, before=whole.keys[i], limit=limit)
        assert before.rows == [_as_row(r) for r in ref[max(0, i - limit):i]]
        assert before.has_prev == (i - limit > 0)


def test_search_is_literal_and_case_insensitive(db):
    """``%`` and ``_`` are characters, not wildcards; case does not matter; the field path counts."""
    store, rows, _ = db
    for text, must in (("r_e", "customer_email"), ("%_", "100%_off"), ("_", None), ("CONTENT", "content")):
        f = FindingFilter(search=text)
        got = data.page(store.con, f, "entity", limit=5000).rows
        assert [r[0] for r in got] == [r["finding_id"] for r in reference(rows, f, "entity")]
        assert got, text
        if must:
            assert all(must in (r[5] or "").lower() or must in (r[6] or "").lower() for r in got)
    # "customerXemail" would match r_e if _ were a wildcard.
    assert not any(r[6] == "customerXemail" for r in data.page(store.con, FindingFilter(search="r_e"), limit=5000).rows)


def test_raw_values_are_never_read_nor_searched(db):
    store, rows, _ = db
    raw = rows[0]["raw_value"]
    assert raw.startswith(RAW_MARK)  # the fixture did store raw values
    assert data.page(store.con, FindingFilter(search=raw)).rows == []
    assert data.count(store.con, FindingFilter(search=RAW_MARK)) == 0
    everything = repr(data.page(store.con, None, "file", limit=5000).rows)
    everything += repr(data.finding_detail(store.con, rows[0]["finding_id"]))
    everything += repr(data.sf_map_rows(store.con))
    assert RAW_MARK not in everything
    assert "raw_value" not in data.ROW_FIELDS and "raw_value" not in data.DETAIL_FIELDS


def test_count_cache_counts_once_per_filter_and_data_version(db, tmp_path):
    store, rows, _ = db
    cache = data.CountCache()
    f = FindingFilter(entity="EMAIL_ADDRESS")
    n = cache.get(store.con, f)
    assert n == len(reference(rows, f, "entity"))
    assert cache.get(store.con, f) == n and cache.get(store.con, FindingFilter(entity="EMAIL_ADDRESS")) == n
    assert cache.misses == 1
    assert cache.get(store.con, None) == len(rows) and cache.misses == 2
    assert cache.peek(f, data.data_version(store.con)) == n
    # New findings change the version: the count is recomputed, not served stale.
    with Store.open(tmp_path / "other.duckdb") as other:
        scan = other.begin_scan(["scan"], "rules", 1)
        sid = other.begin_source(scan, "x.log", 1, 1, None)
        other.insert_findings(scan, sid, "x.log", _batch(random.Random(1), 10, 1))
        c2 = data.CountCache()
        before = c2.get(other.con, FindingFilter())
        other.insert_findings(scan, sid, "x.log", _batch(random.Random(2), 10, 100))
        assert c2.get(other.con, FindingFilter()) == before + 10
        assert c2.misses == 2


def test_facets_match_a_python_count(db):
    store, rows, _ = db
    for col in ("entity", "rule_id", "sf_object", "dest_vendor", "source_path"):
        want = Counter(r[col] for r in rows if r[col] is not None)
        got = data.facet(store.con, col)
        assert dict(got) == dict(want)
        assert [n for _, n in got] == sorted(want.values(), reverse=True)
    assert dict(data.facet(store.con, "severity")) == dict(Counter(r["severity_rank"] for r in rows))
    with pytest.raises(ValueError, match="raw_value"):
        data.facet(store.con, "raw_value")


def test_incident_choices(db):
    store, rows, _incidents = db
    got = data.incident_choices(store.con)
    want = Counter(r["incident_id"] for r in rows if r["incident_id"])
    assert [(i, n) for i, _, n in got] == sorted(want.items(), reverse=True)
    assert {t for _, t, _ in got} == {"A", "B"}


def test_finding_detail_shows_the_record_masked(db):
    store, rows, (a, _) = db
    r = next(x for x in rows if x["incident_id"] == a and x["ts"] is not None)
    d = data.finding_detail(store.con, r["finding_id"])
    for col in data.DETAIL_FIELDS:
        assert d[col] == r[col], col
    assert (d["incident_id"], d["incident_title"]) == (a, "A")
    siblings = sorted((x for x in rows if (x["source_path"], x["line"]) == (r["source_path"], r["line"])),
                      key=lambda x: (x["start_byte"], x["end_byte"], x["finding_id"]))
    assert [s["finding_id"] for s in d["record"]] == [s["finding_id"] for s in siblings]
    assert r["finding_id"] in [s["finding_id"] for s in d["record"]]
    ids = [s["masked"] for s in siblings if s["entity"] == "SALESFORCE_RECORD_ID"]
    assert d["record_id"] == (ids[0] if ids else None)
    same = [x for x in rows if x["value_hash"] == r["value_hash"] and x["entity"] == r["entity"]]
    assert d["same_value_findings"] == len(same) >= 1
    assert d["same_value_records"] == len({(x["source_path"], x["line"]) for x in same})
    assert data.finding_detail(store.con, 10**9) is None


def test_sf_map_counts_are_exact_at_every_level(db):
    store, rows, _ = db
    got = data.sf_map_rows(store.con)
    sf = [r for r in rows if r["sf_object"] is not None]

    def agg(group):
        return {"findings": len(group), "records": len({(r["source_path"], r["line"]) for r in group}),
                "data_subjects": len({r["value_hash"] for r in group if r["entity"] in SUBJECT_ENTITIES}),
                "residency_violation": any(r["residency_violation"] for r in group)}

    want = []
    for obj in sorted({r["sf_object"] for r in sf}):
        o = [r for r in sf if r["sf_object"] == obj]
        want.append({"level": 0, "sf_object": obj, **agg(o)})
        for item in sorted({r["sf_field"] or r["entity"] for r in o}):
            it = [r for r in o if (r["sf_field"] or r["entity"]) == item]
            want.append({"level": 1, "sf_object": obj, "data_item": item, **agg(it)})
            dests = sorted({(r["dest_vendor"], r["dest_region"], r["dest_jurisdiction"]) for r in it},
                           key=lambda d: tuple((x is None, x or "") for x in d))
            for dest in dests:
                g = [r for r in it if (r["dest_vendor"], r["dest_region"], r["dest_jurisdiction"]) == dest]
                want.append({"level": 2, "sf_object": obj, "data_item": item, "dest_vendor": dest[0],
                             "dest_region": dest[1], "dest_jurisdiction": dest[2], **agg(g)})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: g[k] for k in w} == w
    assert all(g["mapped_field"] == (g["data_item"] in ("Email", "Phone")) for g in got if g["level"])


def test_filter_from_mapping():
    f = FindingFilter.from_mapping({"incident": "3", "severity": "HIGH", "destination": "OpenAI", "file": "a.log",
                                    "rule": "email", "q": "x", "object": None})
    assert f == FindingFilter(incident_id=3, min_severity_rank=3, dest_vendor="OpenAI", source_path="a.log",
                              rule_id="email", search="x")
    assert FindingFilter.from_mapping(None) == FindingFilter()
    assert f.active() == {"rule_id": "email", "min_severity_rank": 3, "dest_vendor": "OpenAI",
                          "source_path": "a.log", "incident_id": 3, "search": "x"}
    assert FindingFilter(dest_vendor="").active() == {"dest_vendor": ""}
    with pytest.raises(ValueError, match="raw_value"):
        FindingFilter.from_mapping({"raw_value": "x"})
    with pytest.raises(ValueError, match="severity 'urgent'"):
        FindingFilter.from_mapping({"severity": "urgent"})


def test_bad_arguments(db):
    store, _, _ = db
    with pytest.raises(ValueError, match="unknown sort"):
        data.page(store.con, None, "price")
    with pytest.raises(ValueError, match="not both"):
        data.page(store.con, None, after=(1, 1), before=(1, 1))
    with pytest.raises(ValueError, match="2 keys"):
        data.page(store.con, None, "severity", after=(1,))
