"""Salesforce context of a finding: the object a record ID denotes and the field a value sat in.

- :func:`object_for_id` reads the key prefix of a 15/18-character record ID (DOMAIN.md §2):
  prefixes learned from the org's describe call first, then the community table shipped in
  ``leakwatch/data/sfid_prefixes.json`` (MIT, see ``NOTICE-sfid.txt`` beside it).
- :func:`map_field` turns a CSV column, JSON path or logfmt key into ``(Object, Field)`` through
  the data file ``rules/salesforce_fields.yaml`` (described at its top), validated on load like
  the rules and the AI-endpoint registry.
- :func:`prefixes_from_describe_global`, :func:`save_learned_prefixes` and
  :func:`load_learned_prefixes` learn an org's own (custom object) prefixes and keep them in the
  store's ``sf_prefixes`` table.
- :data:`SUBJECT_ENTITIES` names the entities that identify a person, for counting data subjects.
"""
from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from leakwatch._core.fastval import sfid_suffix as _c_sfid_suffix
from leakwatch.detect.context import normalize_field
from leakwatch.detect.egress import DataFileProblem, read_yaml_mapping
from leakwatch.detect.rules import _Mapping, _type_name, _unknown_key
from leakwatch.detect.validators import get_validator
from leakwatch.errors import InputError, RuleLoadError, StoreError

# Entities (the `entity:` of rules/*.yaml) whose values point at one person, so that distinct
# values approximate distinct data subjects (GDPR Art. 33(3) asks for "approximate numbers").
# One person found by email and by phone counts twice: the sum over entities is an upper bound,
# the largest single entity's count a lower bound. Left out: DATE_OF_BIRTH, STREET_ADDRESS and
# IP_ADDRESS (shared by many people), record IDs (counted per object instead) and credentials.
SUBJECT_ENTITIES: frozenset[str] = frozenset({
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "PERSON_NAME",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "UK_NINO",
    "DE_STEUER_ID",
    "FR_NIR",
    "ES_DNI",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "NL_BSN",
    "PL_PESEL",
})

ORIGIN_DESCRIBE = "describe"

_BASE62_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?\Z")
_PREFIX_RE = re.compile(r"[0-9A-Za-z]{3}\Z")
# Custom objects and fields end in __c (a namespace may come first: ns__Score__c).
_CUSTOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*__c\Z", re.IGNORECASE)
_API_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")


# --- record IDs --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def builtin_prefixes() -> Mapping[str, tuple[str, ...]]:
    """The shipped prefix table: key prefix → object names (more than one where the community
    list says the prefix is shared, and for "0C3", which the file gives twice with two names)."""
    text = resources.files("leakwatch").joinpath("data", "sfid_prefixes.json").read_text(encoding="utf-8")

    def merge(pairs: list[tuple[str, Any]]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for k, v in pairs:
            names = (v,) if isinstance(v, str) else tuple(v)
            out[k] = tuple(dict.fromkeys(out.get(k, ()) + names))
        return out

    return json.loads(text, object_pairs_hook=merge)


def sfid_checksum_ok(sfid: str) -> bool | None:
    """Whether an 18-character ID's last three characters are the checksum of the first 15
    (``None`` for a 15-character ID, which has none)."""
    if len(sfid) != 18 or not _BASE62_ID.match(sfid):
        return None if len(sfid) == 15 else False
    return _c_sfid_suffix(sfid[:15].encode("ascii")) == sfid[15:]


def to_18(sfid: str) -> str:
    """The 18-character, case-insensitive-safe form of a 15-character ID (18 stay as they are)."""
    if not _BASE62_ID.match(sfid):
        raise ValueError(f"not a Salesforce ID: {len(sfid)} characters")
    return sfid if len(sfid) == 18 else sfid + _c_sfid_suffix(sfid.encode("ascii"))


def objects_for_prefix(prefix: str, learned: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Object names for a 3-character key prefix: the learned name if there is one, else the
    shipped table's (several for an ambiguous prefix); empty when unknown. Case-sensitive."""
    if learned:
        name = learned.get(prefix)
        if name:
            return (name,)
    return builtin_prefixes().get(prefix, ())


_SFID_VALIDATOR = get_validator("sfid", {})


def object_for_id(sfid: str | bytes, learned: Mapping[str, str] | None = None, *, strict: bool = False) -> str | None:
    """The object a record ID belongs to, e.g. ``"003..."`` → ``"Contact"``.

    ``learned`` (prefix → object, from :func:`load_learned_prefixes`) wins over the shipped
    table, so an org's custom objects (``a0X`` → ``Invoice__c``) are named. An ambiguous shipped
    prefix gives the candidates joined with ``|`` (``"Partner|OpportunityPartner"``). ``None``
    when the ID is not 15/18 base-62 characters or its prefix is unknown.

    Wrong checksums occur in real fixtures (DOMAIN.md §2: score, don't reject), so by default an
    18-character ID is mapped whatever its suffix; ``strict=True`` also requires what the
    ``sfid`` rule validator requires (checksum, reserved ``0``, not all digits).
    """
    if isinstance(sfid, (bytes, bytearray)):
        sfid = bytes(sfid).decode("latin-1")
    s = sfid.strip()
    if not _BASE62_ID.match(s):
        return None
    if strict and not _SFID_VALIDATOR(s.encode("ascii")):
        return None
    names = objects_for_prefix(s[:3], learned)
    if not names:
        return None
    return names[0] if len(names) == 1 else "|".join(names)


def prefixes_from_describe_global(payload: Mapping[str, Any]) -> dict[str, str]:
    """Key prefix → object name from a describe-global response
    (``GET /services/data/vXX.X/sobjects``: ``{"sobjects": [{"name": …, "keyPrefix": …}, …]}``).

    Objects without a prefix (``keyPrefix: null``: history, share and event objects) are left
    out; where two objects claim a prefix the first keeps it. Raises :class:`InputError` when the
    payload is not a describe-global response.
    """
    sobjects = payload.get("sobjects") if isinstance(payload, Mapping) else None
    if not isinstance(sobjects, list):
        raise InputError("describe-global response has no 'sobjects' list (expected GET /services/data/vXX.X/sobjects)")
    out: dict[str, str] = {}
    for i, so in enumerate(sobjects):
        if not isinstance(so, Mapping):
            raise InputError(f"describe-global response: sobjects[{i}] is not an object")
        prefix, name = so.get("keyPrefix"), so.get("name")
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            continue
        if not isinstance(name, str) or not name:
            raise InputError(f"describe-global response: sobjects[{i}] (keyPrefix {prefix}) has no name")
        out.setdefault(prefix, name)
    return out


def _instance_label(instance: str) -> str:
    """The instance URL without user info, path or query, so no credential lands in the table."""
    parts = urllib.parse.urlsplit(instance.strip())
    if not parts.scheme or not parts.hostname:
        return instance.strip().rpartition("@")[2]
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def save_learned_prefixes(con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str], instance: str) -> int:
    """Store learned prefixes (``prefix → object``) from ``instance`` in ``sf_prefixes``,
    replacing what was stored for those prefixes. Returns how many were written.

    One statement, so a failure stores none of them. Raises :class:`InputError` for a malformed
    prefix or name (before writing) and :class:`StoreError` for a database error.
    """
    from leakwatch.store.db import private_umask

    rows = {}
    for prefix, name in mapping.items():
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise InputError(f"learned prefix {prefix!r} is not three base-62 characters")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"learned prefix {prefix}: object name {name!r} is empty")
        rows[prefix] = name.strip()
    if not rows:
        return 0
    label = _instance_label(instance)
    try:
        with private_umask():  # the WAL is recreated on write: keep it 0600 like the store does
            con.execute(
                """
                INSERT INTO sf_prefixes (prefix, object_name, origin, instance, learned_at)
                SELECT unnest($prefixes), unnest($names), $origin, $instance, current_timestamp
                ON CONFLICT (prefix) DO UPDATE SET
                    object_name = excluded.object_name,
                    origin = excluded.origin,
                    instance = excluded.instance,
                    learned_at = excluded.learned_at
                """,
                {"prefixes": list(rows), "names": list(rows.values()), "origin": ORIGIN_DESCRIBE, "instance": label},
            )
    except duckdb.Error as e:
        raise StoreError(f"cannot store learned Salesforce prefixes: {e}") from e
    return len(rows)


def load_learned_prefixes(con: duckdb.DuckDBPyConnection, instance: str | None = None) -> dict[str, str]:
    """Learned prefixes (``prefix → object``) from ``sf_prefixes``; only those learned from
    ``instance`` when it is given."""
    sql = "SELECT prefix, object_name FROM sf_prefixes"
    params: list[Any] = []
    if instance is not None:
        sql += " WHERE instance = ?"
        params.append(_instance_label(instance))
    try:
        return dict(con.execute(sql + " ORDER BY prefix", params).fetchall())
    except duckdb.Error as e:
        raise StoreError(f"cannot read learned Salesforce prefixes: {e}") from e


# --- field mapping -----------------------------------------------------------------------------


class FieldMapError(RuleLoadError):
    """``salesforce_fields.yaml`` is invalid. ``problems`` holds every mistake as
    ``(file, line, where, field, message)``; the message lists them all."""

    def __init__(self, problems: list[tuple[str, int | None, str | None, str | None, str]]):
        self.problems = problems
        self.file, self.line, self.entry, self.field, self.message = problems[0]
        lines = []
        for file, line, where, fld, msg in problems:
            parts = [file + (f":{line}" if line else "")]
            if where is not None:
                parts.append(where)
            if fld is not None:
                parts.append(f"field {fld!r}")
            lines.append(": ".join(parts) + ": " + msg)
        super().__init__("\n".join(lines))


_TOP_LEVEL = ("description", "objects", "object_aliases", "aliases", "needs_object", "event_columns")
_ALIAS_FIELDS = ("keys", "field", "objects")


def default_field_map_path() -> Path:
    """The shipped ``rules/salesforce_fields.yaml``."""
    # src/leakwatch/detect/salesforce.py -> <repo>/rules (as rules.default_rules_dir)
    return Path(__file__).resolve().parents[3] / "rules" / "salesforce_fields.yaml"


def _norm_key(key: str) -> str:
    """``shipping_address.Street`` → ``shippingaddress.street``."""
    return ".".join(p for p in (normalize_field(c) for c in key.split(".")) if p)


_BRACKET_STR = re.compile(r"""\[\s*["']([^"'\]]*)["']\s*\]""")
_BRACKET = re.compile(r"\[[^\]]*\]")
_SEP = re.compile(r"[./]")


def _components(path: str) -> list[tuple[str, str]]:
    """``records[0].Contact.Email`` → ``[("records", "records"), ("Contact", "contact"), ("Email", "email")]``."""
    p = _BRACKET.sub("", _BRACKET_STR.sub(r".\1", path))
    out = []
    for raw in _SEP.split(p):
        raw = raw.strip()
        n = normalize_field(raw)
        if n:
            out.append((raw, n))
    return out


class FieldMap:
    """The loaded ``salesforce_fields.yaml``. Build with :func:`load_field_map`."""

    def __init__(self, objects: Mapping[str, tuple[str, ...]], object_aliases: Mapping[str, str],
                 aliases: Mapping[str, tuple[str, tuple[str, ...]]], needs_object: Iterable[str],
                 event_columns: Mapping[str, Mapping[str, tuple[str, str]]], source: str = ""):
        """Use :func:`load_field_map`; the arguments must already be validated."""
        self.objects = dict(objects)
        self.source = source
        self._fields = {o: {f.lower(): f for f in fs} for o, fs in objects.items()}
        self._object_by_norm = {normalize_field(o): o for o in objects}
        self._object_by_norm.update(object_aliases)
        # Every field is its own key; explicit aliases come on top and win.
        self._aliases: dict[str, tuple[str, tuple[str, ...]]] = {}
        for o, fs in objects.items():
            for f in fs:
                key = normalize_field(f)
                fld, cands = self._aliases.get(key, (f, ()))
                self._aliases[key] = (fld, cands + (o,))
        self._aliases.update(aliases)
        self._needs_object = frozenset(needs_object)
        self._event_columns = {t.lower(): dict(cols) for t, cols in event_columns.items()}
        self._cache: dict[tuple[str, str | None, str | None], tuple[str, str] | None] = {}
        self._lock = threading.Lock()

    def object_name(self, name: str | None) -> str | None:
        """The object a path component or ENTITY_NAME stands for: ``contacts`` → ``Contact``,
        ``Owner`` → ``User``, ``Invoice__c`` → ``Invoice__c``; ``None`` if none."""
        if not name:
            return None
        if _CUSTOM_NAME.match(name.strip()):
            return name.strip()
        n = normalize_field(name)
        hit = self._object_by_norm.get(n)
        if hit is None and len(n) > 3:
            if n.endswith("ies"):
                hit = self._object_by_norm.get(n[:-3] + "y")
            elif n.endswith("s"):
                hit = self._object_by_norm.get(n[:-1])
        return hit

    def map(self, field_path: str | None, *, entity: str | None = None,
            event_type: str | None = None) -> tuple[str, str] | None:
        """See :func:`map_field`."""
        if not field_path:
            return None
        key = (field_path, entity, event_type)
        try:
            return self._cache[key]
        except KeyError:
            pass
        out = self._map(field_path, entity, event_type)
        with self._lock:
            if len(self._cache) >= 65_536:  # keys come from logs: bound the cache
                self._cache.clear()
            self._cache[key] = out
        return out

    def _map(self, field_path: str, entity: str | None, event_type: str | None) -> tuple[str, str] | None:
        if event_type:
            col = normalize_field(field_path)
            for t in (event_type.lower(), "*"):
                hit = self._event_columns.get(t, {}).get(col)
                if hit:
                    return hit
        comps = _components(field_path)
        if not comps:
            return None
        leaf_raw, leaf = comps[-1]
        path_obj = None
        for raw, _n in reversed(comps[:-1]):
            path_obj = self.object_name(raw)
            if path_obj:
                break
        ctx_obj = path_obj or self.object_name(entity)
        if _CUSTOM_NAME.match(leaf_raw):
            return (ctx_obj, leaf_raw) if ctx_obj else None
        hit, used = None, 0
        names = [n for _r, n in comps]
        for size in (3, 2, 1):
            if len(names) >= size:
                hit = self._aliases.get(".".join(names[-size:]))
                if hit:
                    used = size
                    break
        if path_obj is None and ctx_obj is not None:
            # The record names the object (ENTITY_NAME, attributes.type): its own aliases first
            # (a case's `email` is Case.SuppliedEmail, an order's Order.BillingEmailAddress).
            own_alias = self._aliases.get(f"{normalize_field(ctx_obj)}.{leaf}")
            if own_alias is not None and own_alias[0].lower() in self._fields.get(ctx_obj, {}):
                return ctx_obj, self._fields[ctx_obj][own_alias[0].lower()]
        if hit is None:
            return None
        fld, candidates = hit
        if ctx_obj in self._fields:
            own = self._fields[ctx_obj]
            f = own.get(fld.lower()) or own.get("person" + fld.lower())  # person accounts
            if f:
                return ctx_obj, f
        if used == 1 and leaf in self._needs_object:
            return None  # `name` under an unknown or other object: not a person's name
        if ctx_obj is not None and ctx_obj in self._fields:
            return None  # the path or the record names the object, and it has no such field
        obj = candidates[0]
        return obj, self._fields[obj][fld.lower()]


def load_field_map(path: str | os.PathLike | None = None) -> FieldMap:
    """Load and validate ``salesforce_fields.yaml`` (default: the shipped one).

    Raises :class:`FieldMapError` naming file, line and field of every mistake: unknown keys,
    object or field names that are not API names, aliases of fields no object has, candidate
    objects without the field, keys given twice, event columns not written ``Object.Field``.
    """
    p = Path(path) if path is not None else default_field_map_path()
    src = str(p)
    problems: list[tuple[str, int | None, str | None, str | None, str]] = []

    def add(line: int | None, where: str | None, fld: str | None, msg: str) -> None:
        problems.append((src, line, where, fld, msg))

    try:
        doc = read_yaml_mapping(p)
    except DataFileProblem as e:
        raise FieldMapError([(src, e.line, None, None, e.message)]) from None
    if doc is None:
        raise FieldMapError([(src, None, None, "objects", "the file is empty: it needs 'objects:'")])
    for k in doc:
        if k not in _TOP_LEVEL:
            add(doc.key_lines.get(k), None, str(k), _unknown_key(k, _TOP_LEVEL))
    for key, line in doc.duplicates:
        add(line, None, str(key), "given twice")

    # objects
    objects: dict[str, tuple[str, ...]] = {}
    raw_objects = doc.get("objects")
    if not isinstance(raw_objects, _Mapping) or not raw_objects:
        add(doc.key_lines.get("objects", doc.line), None, "objects",
            "missing or not a mapping of object → list of fields")
        raw_objects = _Mapping()
    for obj, fields in raw_objects.items():
        line = raw_objects.key_lines.get(obj)
        if not isinstance(obj, str) or not _API_NAME.match(obj):
            add(line, None, f"objects.{obj}", "an object is written as its API name, e.g. Contact")
            continue
        if not isinstance(fields, list) or not all(isinstance(f, str) and _API_NAME.match(f) for f in fields):
            add(line, f"object {obj}", "objects", f"expected a list of field API names, got {fields!r}")
            continue
        lowered = [f.lower() for f in fields]
        dup = next((f for f in fields if lowered.count(f.lower()) > 1), None)
        if dup:
            add(line, f"object {obj}", "objects", f"field {dup!r} is listed twice")
            continue
        objects[obj] = tuple(fields)
    for key, line in getattr(raw_objects, "duplicates", []):
        add(line, None, f"objects.{key}", "object given twice")
    has_field = {o: {f.lower() for f in fs} for o, fs in objects.items()}

    # object_aliases
    object_aliases: dict[str, str] = {}
    raw_oa = doc.get("object_aliases") or _Mapping()
    if not isinstance(raw_oa, _Mapping):
        add(doc.key_lines.get("object_aliases"), None, "object_aliases", "expected a mapping of name → object")
        raw_oa = _Mapping()
    for name, obj in raw_oa.items():
        line = raw_oa.key_lines.get(name)
        if obj not in objects:
            add(line, None, f"object_aliases.{name}", _unknown_key(obj, list(objects)).replace("field", "object"))
            continue
        object_aliases[normalize_field(str(name))] = obj

    # aliases
    aliases: dict[str, tuple[str, tuple[str, ...]]] = {}
    alias_lines: dict[str, int] = {}
    raw_aliases = doc.get("aliases") or []
    if not isinstance(raw_aliases, list):
        add(doc.key_lines.get("aliases"), None, "aliases", "expected a list of {keys, field, objects}")
        raw_aliases = []
    for i, raw in enumerate(raw_aliases):
        where = f"alias #{i + 1}"
        if not isinstance(raw, _Mapping):
            add(doc.key_lines.get("aliases"), where, None, f"expected a mapping, got {_type_name(raw)}")
            continue
        kl = raw.key_lines
        bad = [k for k in raw if k not in _ALIAS_FIELDS]
        if bad:
            add(kl.get(bad[0]), where, str(bad[0]), _unknown_key(bad[0], _ALIAS_FIELDS))
            continue
        fld = raw.get("field")
        if not isinstance(fld, str) or not _API_NAME.match(fld):
            add(kl.get("field", raw.line), where, "field", f"expected a field API name, got {fld!r}")
            continue
        where = f"alias {fld}"
        keys = raw.get("keys")
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and _norm_key(k) for k in keys):
            add(kl.get("keys", raw.line), where, "keys", f"expected a list of keys, got {keys!r}")
            continue
        if "objects" in raw:
            cands = raw["objects"]
            if not isinstance(cands, list) or not cands:
                add(kl.get("objects"), where, "objects", f"expected a list of objects, got {cands!r}")
                continue
            missing = [o for o in cands if o not in objects]
            if missing:
                add(kl.get("objects"), where, "objects", _unknown_key(missing[0], list(objects)).replace("field", "object"))
                continue
            lacking = [o for o in cands if fld.lower() not in has_field[o]]
            if lacking:
                add(kl.get("objects"), where, "objects", f"{lacking[0]} has no field {fld} (add it under objects)")
                continue
            candidates = tuple(cands)
        else:
            candidates = tuple(o for o in objects if fld.lower() in has_field[o])
            if not candidates:
                add(kl.get("field"), where, "field", f"no object under 'objects' has a field {fld!r}")
                continue
        for k in keys:
            nk = _norm_key(k)
            if nk in alias_lines:
                add(kl.get("keys"), where, "keys", f"key {k!r} is already an alias (line {alias_lines[nk]})")
                continue
            alias_lines[nk] = kl.get("keys", raw.line)
            aliases[nk] = (fld, candidates)

    # needs_object
    raw_needs = doc.get("needs_object") or []
    if not isinstance(raw_needs, list) or not all(isinstance(x, str) for x in raw_needs):
        add(doc.key_lines.get("needs_object"), None, "needs_object", "expected a list of keys")
        raw_needs = []
    needs = [normalize_field(x) for x in raw_needs]

    # event_columns
    event_columns: dict[str, dict[str, tuple[str, str]]] = {}
    raw_ec = doc.get("event_columns") or _Mapping()
    if not isinstance(raw_ec, _Mapping):
        add(doc.key_lines.get("event_columns"), None, "event_columns", "expected a mapping of event type → columns")
        raw_ec = _Mapping()
    for etype, cols in raw_ec.items():
        line = raw_ec.key_lines.get(etype)
        if not isinstance(cols, _Mapping):
            add(line, f"event type {etype}", "event_columns", "expected a mapping of column → Object.Field")
            continue
        out: dict[str, tuple[str, str]] = {}
        for col, target in cols.items():
            cline = cols.key_lines.get(col)
            obj, dot, fld = str(target).partition(".") if isinstance(target, str) else ("", "", "")
            if not dot or obj not in objects or fld.lower() not in has_field[obj]:
                add(cline, f"event type {etype}", f"event_columns.{etype}.{col}",
                    f"{target!r} is not Object.Field of an object and field listed under 'objects'")
                continue
            out[normalize_field(str(col))] = (obj, {f.lower(): f for f in objects[obj]}[fld.lower()])
        event_columns[str(etype)] = out

    if problems:
        raise FieldMapError(problems)
    return FieldMap(objects, object_aliases, aliases, needs, event_columns, src)


_default_lock = threading.Lock()
_default_map: FieldMap | None = None


def default_field_map() -> FieldMap:
    """The shipped field map, loaded once."""
    global _default_map
    with _default_lock:
        if _default_map is None:
            _default_map = load_field_map()
        return _default_map


def map_field(field_path: str | None, *, entity: str | None = None, event_type: str | None = None,
              fields: FieldMap | None = None) -> tuple[str, str] | None:
    """The Salesforce ``(Object, Field)`` a value under ``field_path`` belongs to, or ``None``.

    ``field_path`` is a CSV column, a JSON path (``records[0].Contact.Email``,
    ``shipping_address.street``) or a logfmt key. The object comes from the path (nearest
    component that names one: ``Contact.Email``, ``contacts[1].email``, ``Owner.Email`` → User),
    else from ``entity`` (ENTITY_NAME / ENTITY_TYPE, ``attributes.type``), else from the field
    (``BillingStreet`` → Account; ``email`` → Contact, the first object listed with it). Generic
    keys such as ``name`` map only with an object; custom fields (``Score__c``) only with an
    object too. ``event_type`` selects EventLogFile column meanings (``USER_NAME`` →
    User.Username). ``fields`` defaults to the shipped ``rules/salesforce_fields.yaml``.
    """
    fm = fields if fields is not None else default_field_map()
    return fm.map(field_path, entity=entity, event_type=event_type)
