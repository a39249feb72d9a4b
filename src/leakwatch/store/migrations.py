"""Versioned schema migrations for the findings database.

Each migration is a function ``mNNN_name(con)`` and :data:`MIGRATIONS` lists them in order (the
scheme simonw/llm uses). Applied ones are recorded in ``schema_migrations``; opening a database
applies only those it has not seen, each in its own transaction. Never edit a migration that has
shipped: add the next one.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

import duckdb

from leakwatch.errors import StoreError

Migration = Callable[[duckdb.DuckDBPyConnection], None]

_NAME_RE: Final = re.compile(r"^m(\d{3,})_\w+$")

SCAN_STATUSES: Final = ("running", "ok", "partial", "failed", "interrupted")
SOURCE_STATUSES: Final = ("running", "ok", "error", "skipped", "unchanged")


def _in_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    """Create scans, sources, findings and scan_errors."""
    con.execute(
        f"""
        CREATE SEQUENCE scans_seq START 1;
        CREATE TABLE scans (
            scan_id     BIGINT PRIMARY KEY DEFAULT nextval('scans_seq'),
            started_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            finished_at TIMESTAMPTZ,
            status      VARCHAR NOT NULL DEFAULT 'running'
                        CHECK (status IN ({_in_list(SCAN_STATUSES)})),
            argv        VARCHAR,
            rules_hash  VARCHAR,
            workers     INTEGER,
            n_files     BIGINT NOT NULL DEFAULT 0,
            n_bytes     BIGINT NOT NULL DEFAULT 0,
            n_records   BIGINT NOT NULL DEFAULT 0,
            n_findings  BIGINT NOT NULL DEFAULT 0,
            n_errors    BIGINT NOT NULL DEFAULT 0,
            version     VARCHAR
        );

        CREATE SEQUENCE sources_seq START 1;
        CREATE TABLE sources (
            source_id    BIGINT PRIMARY KEY DEFAULT nextval('sources_seq'),
            scan_id      BIGINT NOT NULL,
            path         VARCHAR NOT NULL,
            size         BIGINT,
            mtime_ns     BIGINT,
            content_hash VARCHAR,
            compression  VARCHAR,
            status       VARCHAR NOT NULL DEFAULT 'running'
                         CHECK (status IN ({_in_list(SOURCE_STATUSES)})),
            n_records    BIGINT NOT NULL DEFAULT 0,
            n_findings   BIGINT NOT NULL DEFAULT 0,
            started_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            finished_at  TIMESTAMPTZ,
            error        VARCHAR
        );

        CREATE SEQUENCE findings_seq START 1;
        -- No PRIMARY KEY and no UNIQUE index here, on purpose. finding_id is unique by its
        -- sequence; (source_path, line, start_byte, rule_id, value_hash) is kept unique by
        -- ingest.insert_findings, the only writer. Measured on DuckDB 2.0.1 with 50k-row batches:
        -- a UNIQUE index plus ON CONFLICT DO NOTHING is planned as a MERGE that scans the whole
        -- findings table per batch (300-800 ms at 1.5M rows, growing with the table), and a
        -- primary key alone adds ~20 ms per batch.
        CREATE TABLE findings (
            finding_id      BIGINT NOT NULL DEFAULT nextval('findings_seq'),
            scan_id         BIGINT NOT NULL,
            source_id       BIGINT NOT NULL,
            source_path     VARCHAR NOT NULL,
            line            BIGINT NOT NULL,
            start_byte      INTEGER NOT NULL,
            end_byte        INTEGER NOT NULL,
            rule_id         VARCHAR NOT NULL,
            entity          VARCHAR NOT NULL,
            confidence      DOUBLE,
            score_base      DOUBLE,
            score_validator DOUBLE,
            score_context   DOUBLE,
            severity        VARCHAR NOT NULL,
            severity_rank   TINYINT NOT NULL CHECK (severity_rank BETWEEN 0 AND 4),
            field           VARCHAR,
            masked          VARCHAR,
            value_hash      VARCHAR NOT NULL,
            raw_value       VARCHAR,
            created_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );

        CREATE SEQUENCE scan_errors_seq START 1;
        CREATE TABLE scan_errors (
            error_id    BIGINT PRIMARY KEY DEFAULT nextval('scan_errors_seq'),
            scan_id     BIGINT NOT NULL,
            source_path VARCHAR,
            line        BIGINT,
            kind        VARCHAR NOT NULL,
            message     VARCHAR NOT NULL,
            -- "at" is a reserved word in DuckDB 2, so the column name is always quoted.
            "at"        TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """
    )


def m002_source_entity_counts(con: duckdb.DuckDBPyConnection) -> None:
    """Per-source finding counts by (entity, severity), as JSON: what a later scan reports for a
    file it skips as unchanged. Counting the ``findings`` rows of that path instead would also
    count values from earlier versions of the file that are no longer in it."""
    con.execute("ALTER TABLE sources ADD COLUMN entity_counts VARCHAR")


def m003_context_events_salesforce(con: duckdb.DuckDBPyConnection) -> None:
    """Where each finding was and where its data went; the events the failure patterns need;
    Salesforce key prefixes learned from describe; EventLogFile pull checkpoints.

    findings gain: ``field_path`` (the field as the format names it: CSV column, JSON path such
    as ``messages[0].content``, logfmt key), ``ts`` (the record's own timestamp, UTC), ``format``
    (the reader that parsed the record), ``detector`` (``regex``, ``column`` for whole CSV cells of
    name-like columns, ``ner`` for presidio), the destination of the record's outbound call
    (``dest_*``, ``residency_violation``) and the Salesforce object/field the value belongs to.

    ``events`` holds one row per record that matters to a pattern even without PII in it: an
    outbound call to an AI endpoint, an EventLogFile row of a bulk, report or API event, a CDN
    hit on an AI-content path. Actors (user, connected app) are stored as keyed hashes with a
    masked preview, like finding values.
    """
    con.execute(
        """
        ALTER TABLE findings ADD COLUMN field_path VARCHAR;
        ALTER TABLE findings ADD COLUMN ts TIMESTAMPTZ;
        ALTER TABLE findings ADD COLUMN format VARCHAR;
        ALTER TABLE findings ADD COLUMN detector VARCHAR DEFAULT 'regex';
        ALTER TABLE findings ADD COLUMN dest_host VARCHAR;
        ALTER TABLE findings ADD COLUMN dest_vendor VARCHAR;
        ALTER TABLE findings ADD COLUMN dest_region VARCHAR;
        ALTER TABLE findings ADD COLUMN dest_jurisdiction VARCHAR;
        ALTER TABLE findings ADD COLUMN residency_violation BOOLEAN;
        ALTER TABLE findings ADD COLUMN sf_object VARCHAR;
        ALTER TABLE findings ADD COLUMN sf_field VARCHAR;
        ALTER TABLE findings ADD COLUMN actor_hash VARCHAR;
        ALTER TABLE findings ADD COLUMN prompt_role VARCHAR;   -- system | user | assistant | tool, for LLM message content

        ALTER TABLE sources ADD COLUMN format VARCHAR;
        ALTER TABLE sources ADD COLUMN parse_problems BIGINT DEFAULT 0;

        CREATE SEQUENCE events_seq START 1;
        CREATE TABLE events (
            event_id            BIGINT NOT NULL DEFAULT nextval('events_seq'),
            scan_id             BIGINT NOT NULL,
            source_id           BIGINT NOT NULL,
            source_path         VARCHAR NOT NULL,
            line                BIGINT NOT NULL,
            ts                  TIMESTAMPTZ,
            format              VARCHAR,
            kind                VARCHAR NOT NULL,   -- ai_call | bulk | report_export | api | cdn_ai
            event_type          VARCHAR,            -- EventLogFile EVENT_TYPE, HTTP method, ...
            actor_hash          VARCHAR,            -- keyed hash of user id / username
            actor_masked        VARCHAR,
            app                 VARCHAR,            -- connected app id, client name, dyno, Mule app
            url_host            VARCHAR,
            url_path            VARCHAR,            -- path only, query string dropped
            status              INTEGER,
            dest_vendor         VARCHAR,
            dest_region         VARCHAR,
            dest_jurisdiction   VARCHAR,
            residency_violation BOOLEAN,
            via_gateway         BOOLEAN,
            sf_object           VARCHAR,            -- ENTITY_TYPE / ENTITY_NAME of bulk and API rows
            rows_processed      BIGINT,
            edge_location       VARCHAR,            -- CDN edge (P4)
            cache_status        VARCHAR,
            created_at          TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );

        CREATE TABLE sf_prefixes (
            prefix      VARCHAR PRIMARY KEY,
            object_name VARCHAR NOT NULL,
            origin      VARCHAR NOT NULL,        -- describe (learned from an org)
            instance    VARCHAR,
            learned_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );

        CREATE TABLE pull_checkpoints (
            instance        VARCHAR PRIMARY KEY,  -- instance URL (no credentials)
            last_created    VARCHAR NOT NULL,     -- CreatedDate of the newest fully stored file
            last_id         VARCHAR,
            updated_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );

        CREATE TABLE pulled_files (
            log_id        VARCHAR PRIMARY KEY,    -- EventLogFile Id
            instance      VARCHAR NOT NULL,
            event_type    VARCHAR,
            log_date      VARCHAR,
            created_date  VARCHAR NOT NULL,
            interval      VARCHAR,
            sequence      INTEGER,
            path          VARCHAR,
            size          BIGINT,
            sha256        VARCHAR,
            status        VARCHAR NOT NULL,       -- downloading | stored | scanned | failed
            error         VARCHAR,
            updated_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """
    )


def m004_alerts(con: duckdb.DuckDBPyConnection) -> None:
    """Alerts raised by the failure-pattern detectors (P1–P4, bulk exports, API volume): what a
    responder triages and what incidents are later opened from. ``evidence`` is JSON with the
    finding and event ids behind the alert; ``summary`` holds masked values only. ``alert_key``
    identifies the same alert across re-runs, so running the detectors twice adds nothing."""
    con.execute(
        """
        CREATE SEQUENCE alerts_seq START 1;
        CREATE TABLE alerts (
            alert_id     BIGINT NOT NULL DEFAULT nextval('alerts_seq'),
            alert_key    VARCHAR NOT NULL,
            scan_id      BIGINT,
            pattern      VARCHAR NOT NULL,   -- P1_key_exposed | P1_gateway_bypass | P2_bulk_then_ai | P3_prompt_pii | P4_cdn_region | bulk_export | api_volume
            severity     VARCHAR NOT NULL,
            severity_rank TINYINT NOT NULL,
            ts           TIMESTAMPTZ,        -- when it happened (from the logs), if known
            actor_hash   VARCHAR,
            dest_vendor  VARCHAR,
            dest_region  VARCHAR,
            summary      VARCHAR NOT NULL,
            evidence     VARCHAR,            -- JSON: {"findings": [...], "events": [...], ...}
            created_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """
    )


#: Every table the migrations create (a test keeps this list in step with them).
TABLES: Final = frozenset({
    "alerts", "audit_head", "audit_log", "db_meta", "events", "findings", "incident_alerts", "incident_clocks",
    "incident_facts", "incident_findings", "incidents", "notices", "outbox", "playbook_steps", "pull_checkpoints",
    "pulled_files", "scan_errors", "scans", "schema_migrations", "sf_prefixes", "sources", "watch_files",
})

INCIDENT_STATUSES: Final = ("detected", "triaged", "contained", "notified", "closed")
STEP_STATUSES: Final = ("pending", "in_progress", "done", "skipped")


def m005_incidents(con: duckdb.DuckDBPyConnection) -> None:
    """Incidents and everything responders do with them.

    ``incident_findings`` / ``incident_alerts`` say which findings and alerts make an incident
    (a finding or alert belongs to at most one: the primary keys keep it so). ``incident_clocks``
    holds each incident's clock events (awareness, classification, …) as they stand now; their
    history, like every other change, is in ``audit_log``. ``audit_log`` is append-only by
    convention and tamper-evident by construction: each row carries an HMAC (keyed with the
    database key) over its content and the previous row's HMAC, and ``audit_head`` an HMAC over
    the row count and last HMAC, so an edited, deleted or truncated row breaks the chain
    (``leakwatch audit verify``).
    """
    con.execute(
        f"""
        CREATE SEQUENCE incidents_seq START 1;
        CREATE TABLE incidents (
            incident_id    BIGINT PRIMARY KEY DEFAULT nextval('incidents_seq'),
            title          VARCHAR NOT NULL,
            group_key      VARCHAR,            -- JSON of the grouping keys; NULL for a hand-made one
            origin         VARCHAR NOT NULL,   -- auto | manual | split
            status         VARCHAR NOT NULL DEFAULT 'detected'
                           CHECK (status IN ({_in_list(INCIDENT_STATUSES)})),
            severity       VARCHAR NOT NULL,
            severity_rank  TINYINT NOT NULL,
            opened_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            updated_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            first_seen     TIMESTAMPTZ,        -- earliest log time (or storing time) of its findings
            last_seen      TIMESTAMPTZ,
            merged_into    BIGINT              -- set when merged into another incident (then closed)
        );
        CREATE TABLE incident_findings (
            finding_id  BIGINT PRIMARY KEY,
            incident_id BIGINT NOT NULL
        );
        CREATE TABLE incident_alerts (
            alert_id    BIGINT PRIMARY KEY,
            incident_id BIGINT NOT NULL
        );
        CREATE TABLE incident_clocks (
            incident_id BIGINT NOT NULL,
            event       VARCHAR NOT NULL,      -- detection | awareness | classification | materiality | …
            "at"        TIMESTAMPTZ NOT NULL,
            set_by      VARCHAR NOT NULL,
            reason      VARCHAR,
            PRIMARY KEY (incident_id, event)
        );
        CREATE TABLE incident_facts (
            incident_id BIGINT NOT NULL,
            key         VARCHAR NOT NULL,      -- likely_consequences, measures, significant, subjects.US-CA, …
            value       VARCHAR NOT NULL,      -- JSON
            set_by      VARCHAR NOT NULL,
            PRIMARY KEY (incident_id, key)
        );
        CREATE TABLE playbook_steps (
            incident_id BIGINT NOT NULL,
            playbook_id VARCHAR NOT NULL,
            step_id     VARCHAR NOT NULL,
            status      VARCHAR NOT NULL CHECK (status IN ({_in_list(STEP_STATUSES)})),
            reason      VARCHAR,
            evidence    VARCHAR,               -- JSON object: evidence item -> what the responder gave
            updated_by  VARCHAR NOT NULL,
            updated_at  TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (incident_id, playbook_id, step_id)
        );
        CREATE SEQUENCE notices_seq START 1;
        CREATE TABLE notices (
            notice_id   BIGINT PRIMARY KEY DEFAULT nextval('notices_seq'),
            incident_id BIGINT NOT NULL,
            regime_id   VARCHAR NOT NULL,
            kind        VARCHAR NOT NULL,
            deadline_id VARCHAR,
            sent_at     TIMESTAMPTZ NOT NULL,  -- when the responder says it went out
            sent_by     VARCHAR NOT NULL,
            reference   VARCHAR                -- the authority's case number, a ticket, …
        );
        CREATE TABLE audit_log (
            seq         BIGINT PRIMARY KEY,
            "at"        TIMESTAMPTZ NOT NULL,
            actor       VARCHAR NOT NULL,
            incident_id BIGINT,
            action      VARCHAR NOT NULL,
            detail      VARCHAR NOT NULL,      -- JSON, masked values only
            reason      VARCHAR,
            prev_hash   VARCHAR NOT NULL,
            row_hash    VARCHAR NOT NULL
        );
        CREATE TABLE audit_head (
            id        INTEGER PRIMARY KEY CHECK (id = 1),
            n_rows    BIGINT NOT NULL,
            last_hash VARCHAR NOT NULL,
            mac       VARCHAR NOT NULL
        );
        """
    )


OUTBOX_STATUSES: Final = ("pending", "sending", "delivered", "dead")


def m006_outbox_watch(con: duckdb.DuckDBPyConnection) -> None:
    """The notification outbox and the offsets of watched files.

    ``outbox``: one row per notification, written in the transaction of the event that caused it;
    ``idempotency_key`` is unique, so an event that fires twice is one notification. A dispatcher
    takes a row by setting ``status = 'sending'`` with a lease; a row whose lease ran out (its
    dispatcher died) is taken again, after asking the target whether it already arrived.
    ``watch_files``: how far ``leakwatch watch`` has read each file (byte offset, line number),
    with the device/inode and a hash of the first bytes to recognise rotation and truncation.
    """
    con.execute(
        f"""
        CREATE SEQUENCE outbox_seq START 1;
        CREATE TABLE outbox (
            notification_id BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'),
            idempotency_key VARCHAR NOT NULL UNIQUE,
            incident_id     BIGINT,
            target          VARCHAR NOT NULL,
            kind            VARCHAR NOT NULL,
            event           VARCHAR NOT NULL,
            payload         VARCHAR NOT NULL,     -- JSON body, masked values only
            status          VARCHAR NOT NULL DEFAULT 'pending' CHECK (status IN ({_in_list(OUTBOX_STATUSES)})),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            lease_until     TIMESTAMPTZ,
            lease_owner     VARCHAR,
            last_status     INTEGER,
            last_error      VARCHAR,              -- redacted: never a credential
            remote_id       VARCHAR,
            created_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            updated_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            delivered_at    TIMESTAMPTZ
        );
        CREATE TABLE watch_files (
            path       VARCHAR PRIMARY KEY,
            device     BIGINT,
            inode      BIGINT,
            "offset"   BIGINT NOT NULL,           -- bytes read and scanned (always at a line end)
            line       BIGINT NOT NULL,           -- lines read so far
            head_hash  VARCHAR,                   -- hash of the first bytes: a different file at the same path
            size       BIGINT,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """
    )


def m007_watch_tail(con: duckdb.DuckDBPyConnection) -> None:
    """``watch_files.tail_hash``: hash of the bytes just before the stored offset of a text
    file. A restarted watch checks it like a running one does: a file rewritten in place with
    the same first bytes (an app's fixed start-up banner) is read again from its start."""
    con.execute("ALTER TABLE watch_files ADD COLUMN tail_hash VARCHAR")


def m008_key_check(con: duckdb.DuckDBPyConnection) -> None:
    """``db_meta``: facts about the database itself. ``key_check`` is an HMAC of a fixed text
    under the database's key, so a key file copied from another database (whose hashes would
    join with nothing stored here) is refused on open instead of used."""
    con.execute("CREATE TABLE db_meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")


def m009_outbox_tried(con: duckdb.DuckDBPyConnection) -> None:
    """``outbox.tried``: a send of the notification was ever started. ``attempts`` says so too,
    until ``notify retry`` sets it back to 0 for a fresh run of attempts; a dead letter whose
    last attempt timed out may have landed, and must be looked up at the target before it is
    sent again (a second ServiceNow ticket otherwise)."""
    con.execute("ALTER TABLE outbox ADD COLUMN tried BOOLEAN DEFAULT false")
    con.execute("UPDATE outbox SET tried = attempts > 0 OR status IN ('sending', 'delivered')")


MIGRATIONS: Final[tuple[Migration, ...]] = (
    m001_initial, m002_source_entity_counts, m003_context_events_salesforce, m004_alerts,
    m005_incidents, m006_outbox_watch, m007_watch_tail, m008_key_check, m009_outbox_tried,
)


def migration_version(migration: Migration) -> int:
    """The version number encoded in a migration's name (``m007_x`` → 7)."""
    m = _NAME_RE.match(migration.__name__)
    if m is None:
        raise ValueError(f"migration {migration.__name__!r} is not named mNNN_description")
    return int(m.group(1))


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [migration_version(m) for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and increasing, got {versions}")


def _ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       VARCHAR NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        )
        """
    )


def applied_versions(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Versions recorded in ``schema_migrations`` (empty if the table does not exist yet)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
        " AND database_name = current_database()"
    ).fetchone()[0]
    if not exists:
        return {}
    return dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())


def pending_migrations(
    con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS, *, label: str = "database"
) -> list[Migration]:
    """Migrations in ``migrations`` not yet applied, in order.

    Raises :class:`StoreError` when the database records a version this code does not know,
    i.e. it was written by a newer leakwatch.
    """
    _check_order(migrations)
    done = applied_versions(con)
    known = {migration_version(m) for m in migrations}
    unknown = sorted(set(done) - known)
    if unknown:
        raise StoreError(
            f"{label}: schema version {unknown[-1]} ({done[unknown[-1]]}) is newer than this "
            f"leakwatch knows (up to {max(known, default=0)}); upgrade leakwatch to use this database"
        )
    return [m for m in migrations if migration_version(m) not in done]


def apply_migrations(
    con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS, *, label: str = "database"
) -> list[int]:
    """Apply the pending migrations, each in its own transaction; return the versions applied.

    A failing migration is rolled back (earlier ones stay applied) and raised as
    :class:`StoreError` naming ``label`` and the migration.
    """
    _ensure_table(con)
    applied = []
    for migration in pending_migrations(con, migrations, label=label):
        version = migration_version(migration)
        con.begin()
        try:
            migration(con)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [version, migration.__name__],
            )
            con.commit()
        except duckdb.Error as e:
            con.rollback()
            raise StoreError(f"{label}: migration {migration.__name__} failed and was rolled back: {e}") from e
        except BaseException:
            con.rollback()
            raise
        applied.append(version)
    return applied
