"""Deadline arithmetic and regime deadlines: DST changes, year ends, public holidays in business
and working days, months, awareness set after the fact, DORA's earliest-of and NIS2's final report.

Expected values are worked out by hand from the calendars (2026: EU summer time starts 29 March
and ends 25 October; US federal holidays from the OPM list; Brazilian national holidays)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leakwatch.config import OrganisationConfig
from leakwatch.incidents import timecalc
from leakwatch.incidents.facts import IncidentFacts
from leakwatch.incidents.regimes import Deadline, deadlines, load_regimes

BRU = ZoneInfo("Europe/Brussels")
NY = ZoneInfo("America/New_York")
SP = ZoneInfo("America/Sao_Paulo")
LA = ZoneInfo("America/Los_Angeles")
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def rs():
    return load_regimes()


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def facts(awareness: datetime, *, notices=None, subjects=0, by_jur=None, responder=None, **events) -> IncidentFacts:
    clock = {"detection": awareness, "awareness": awareness, **events}
    return IncidentFacts(
        incident_id=7, title="AI egress of contact data", status="triaged", severity="high",
        opened_at=awareness, clock_events=clock, categories=("contact", "special"),
        data_subjects=subjects, subjects_by_jurisdiction=by_jur or {}, responder=responder or {},
        notices_sent=notices or {}, org=OrganisationConfig(),
    )


def by_id(ds: list[Deadline]) -> dict[str, Deadline]:
    return {d.id: d for d in ds}


def local_end_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=zone).astimezone(UTC)


# --- hours are real hours --------------------------------------------------------------------


def test_72h_across_spring_change_is_72_real_hours(rs):
    aware = datetime(2026, 3, 27, 10, 0, tzinfo=BRU)          # Friday 10:00 CET = 09:00 UTC
    due = timecalc.add_hours(aware, 72)
    assert due == utc(2026, 3, 30, 9, 0)
    assert (due - aware).total_seconds() == 72 * 3600
    # The wall clock in Brussels moved 73 h: 10:00 CET → 11:00 CEST.
    assert due.astimezone(BRU).hour == 11
    d = by_id(deadlines(rs.get("gdpr-33"), facts(aware.astimezone(UTC)), utc(2026, 3, 28)))["notify"]
    assert d.due == due and d.status == "pending"
    assert d.basis == "72 h after awareness 2026-03-27 09:00 UTC"


def test_72h_across_autumn_change_is_72_real_hours(rs):
    aware = datetime(2026, 10, 23, 10, 0, tzinfo=BRU)         # 10:00 CEST = 08:00 UTC
    due = timecalc.add_hours(aware, 72)
    assert due == utc(2026, 10, 26, 8, 0)
    assert due.astimezone(BRU).hour == 9                      # 71 h on the wall clock
    nis2 = by_id(deadlines(rs.get("nis2"), facts(aware), utc(2026, 10, 24)))
    assert nis2["early-warning"].due == utc(2026, 10, 24, 8, 0)
    assert nis2["notification"].due == due


# --- calendar days keep the wall-clock time --------------------------------------------------


def test_calendar_days_keep_wall_clock_across_eu_changes():
    spring = timecalc.add_calendar_days(datetime(2026, 3, 27, 10, 0, tzinfo=BRU), 3, "Europe/Brussels")
    assert spring.astimezone(BRU).replace(tzinfo=None) == datetime(2026, 3, 30, 10, 0)
    assert spring - datetime(2026, 3, 27, 10, 0, tzinfo=BRU) == 71 * H
    autumn = timecalc.add_calendar_days(datetime(2026, 10, 23, 10, 0, tzinfo=BRU), 3, BRU)
    assert autumn.astimezone(BRU).replace(tzinfo=None) == datetime(2026, 10, 26, 10, 0)
    assert autumn - datetime(2026, 10, 23, 10, 0, tzinfo=BRU) == 73 * H


def test_california_30_days_across_us_spring_change(rs):
    aware = utc(2026, 3, 1, 17, 0)                            # 09:00 PST; US summer time from 8 March
    d = by_id(deadlines(rs.get("ca-1798.82"), facts(aware), utc(2026, 3, 2)))["residents"]
    assert d.due.astimezone(LA).replace(tzinfo=None) == datetime(2026, 3, 31, 9, 0)
    assert d.due == utc(2026, 3, 31, 16, 0)                    # 09:00 PDT
    assert d.due - aware == 30 * 24 * H - H
    assert "30 calendar days (America/Los_Angeles wall clock) after awareness" in d.basis


def test_wall_time_in_gap_or_twice():
    # 02:30 does not exist on 2026-03-29 in Brussels: the clocks jump from 02:00 CET (01:00 UTC).
    assert timecalc.from_local(datetime(2026, 3, 29, 2, 30), BRU) == utc(2026, 3, 29, 1, 0)
    # 02:30 occurs twice on 2026-10-25: the first one (CEST, 00:30 UTC).
    assert timecalc.from_local(datetime(2026, 10, 25, 2, 30), BRU) == utc(2026, 10, 25, 0, 30)
    # A calendar day landing in the gap resolves the same way.
    start = datetime(2026, 3, 28, 2, 30, tzinfo=BRU)
    assert timecalc.add_calendar_days(start, 1, BRU) == utc(2026, 3, 29, 1, 0)


# --- business and working days ---------------------------------------------------------------


def test_sec_four_business_days_over_thanksgiving(rs):
    # Wed 2026-11-25 10:00 ET; Thu 26 is Thanksgiving: Fri 27 (1), Mon 30 (2), Tue 1 (3), Wed 2 (4).
    mat = utc(2026, 11, 25, 15, 0)
    expected = local_end_of(date(2026, 12, 2), NY)
    assert expected == datetime(2026, 12, 3, 4, 59, 59, 999999, tzinfo=UTC)
    assert timecalc.add_business_days(mat, 4, "America/New_York", "US") == expected
    d = by_id(deadlines(rs.get("sec-8k"), facts(utc(2026, 11, 20), materiality=mat), utc(2026, 11, 30)))["form-8k"]
    assert d.due == expected and d.status == "pending"
    assert "4 business days (US holidays, America/New_York; due at the end of the day)" in d.basis
    # Determined at 22:00 ET on the 25th (03:00 UTC on the 26th): still the 25th in New York.
    late = utc(2026, 11, 26, 3, 0)
    assert timecalc.add_business_days(late, 4, NY, "US") == expected
    # Without the holiday calendar the same count would end a day earlier: the holiday matters.
    assert timecalc.nth_business_day(mat, 4, NY, "US") == date(2026, 12, 2)
    assert not timecalc.is_business_day(date(2026, 11, 26), "US")


def test_sec_four_business_days_over_christmas_and_new_year():
    # Wed 2026-12-23: Thu 24 (1), Fri 25 Christmas, Mon 28 (2), Tue 29 (3), Wed 30 (4).
    assert timecalc.nth_business_day(utc(2026, 12, 23, 15), 4, NY, "US") == date(2026, 12, 30)
    # Mon 2026-12-28: 29 (1), 30 (2), 31 (3), Fri 1 Jan New Year, Mon 4 Jan (4).
    due = timecalc.add_business_days(utc(2026, 12, 28, 15), 4, NY, "US")
    assert due == local_end_of(date(2027, 1, 4), NY)
    # Wed 2027-12-29: Thu 30 (1); Fri 31 is New Year's Day 2028 observed; Mon 3 (2), 4 (3), 5 (4).
    assert timecalc.nth_business_day(utc(2027, 12, 29, 15), 4, NY, "US") == date(2028, 1, 5)


def test_lgpd_three_working_days_over_year_end(rs):
    aware = utc(2026, 12, 30, 12, 0)                           # Wed 09:00 in São Paulo
    ds = by_id(deadlines(rs.get("br-lgpd"), facts(aware), utc(2026, 12, 31)))
    # Thu 31 (1), Fri 1 Jan holiday, weekend, Mon 4 (2), Tue 5 (3).
    expected = local_end_of(date(2027, 1, 5), SP)
    assert expected == datetime(2027, 1, 6, 2, 59, 59, 999999, tzinfo=UTC)
    assert ds["anpd"].due == expected and ds["subjects"].due == expected
    assert ds["anpd"].due.astimezone(SP).date() == date(2027, 1, 5)


@pytest.mark.parametrize(("aware", "holiday", "expected"), [
    # Wed 18 Nov: Thu 19 (1), Fri 20 Consciência Negra, Mon 23 (2), Tue 24 (3).
    (utc(2026, 11, 18, 12), date(2026, 11, 20), date(2026, 11, 24)),
    # Fri 30 Oct: weekend, Mon 2 Nov Finados, Tue 3 (1), Wed 4 (2), Thu 5 (3).
    (utc(2026, 10, 30, 12), date(2026, 11, 2), date(2026, 11, 5)),
])
def test_lgpd_working_days_skip_brazilian_holidays(rs, aware, holiday, expected):
    assert not timecalc.is_business_day(holiday, "BR")
    assert timecalc.is_business_day(holiday, "US")             # an ordinary day elsewhere
    d = by_id(deadlines(rs.get("br-lgpd"), facts(aware), aware))["anpd"]
    assert d.due == local_end_of(expected, SP)


def test_business_day_deadline_is_end_of_local_day(rs):
    mat = utc(2026, 11, 25, 15, 0)
    f = facts(utc(2026, 11, 20), materiality=mat)
    due = local_end_of(date(2026, 12, 2), NY)
    at_due = by_id(deadlines(rs.get("sec-8k"), f, due))["form-8k"]
    assert at_due.status == "pending" and at_due.remaining == timedelta(0)
    after = by_id(deadlines(rs.get("sec-8k"), f, due + timedelta(microseconds=1)))["form-8k"]
    assert after.status == "overdue" and after.remaining < timedelta(0)
    # 2026-12-03 00:00 local is already past it.
    assert datetime(2026, 12, 3, 0, 0, tzinfo=NY) > due


def test_business_days_zero_and_start_day_never_counts():
    sat = utc(2026, 11, 28, 15)                                # a Saturday
    assert timecalc.nth_business_day(sat, 0, NY, "US") == date(2026, 11, 28)
    assert timecalc.nth_business_day(sat, 1, NY, "US") == date(2026, 11, 30)
    fri = utc(2026, 11, 27, 15)                                # a business day itself
    assert timecalc.nth_business_day(fri, 1, NY, "US") == date(2026, 11, 30)


# --- months --------------------------------------------------------------------------------------


def test_months_clamp_to_month_end():
    assert timecalc.add_months(datetime(2026, 1, 31, 10, tzinfo=BRU), 1, BRU) == \
        datetime(2026, 2, 28, 10, tzinfo=BRU)
    assert timecalc.add_months(datetime(2028, 1, 31, 10, tzinfo=BRU), 1, BRU) == \
        datetime(2028, 2, 29, 10, tzinfo=BRU)
    assert timecalc.add_months(datetime(2026, 12, 15, 10, tzinfo=BRU), 2, BRU) == \
        datetime(2027, 2, 15, 10, tzinfo=BRU)
    # 31 March 10:00 CEST → 30 April 10:00 CEST; 28 Feb 10:00 CET → 28 March 10:00 CET.
    assert timecalc.add_months(datetime(2026, 3, 31, 10, tzinfo=BRU), 1, BRU).astimezone(BRU).day == 30
    assert timecalc.add_months(datetime(2026, 2, 28, 10, tzinfo=BRU), 1, BRU) == utc(2026, 3, 28, 9)


# --- NIS2 final report: from the notification deadline or the notice actually sent ---------------


def test_nis2_final_report_from_notification_deadline(rs):
    aware = utc(2026, 1, 28, 10, 0)                            # 11:00 in Brussels
    ds = by_id(deadlines(rs.get("nis2"), facts(aware), utc(2026, 1, 29)))
    assert ds["notification"].due == utc(2026, 1, 31, 10, 0)
    assert ds["final-report"].due == utc(2026, 2, 28, 10, 0)   # 31 Jan + 1 month, clamped
    assert "after the 'notification' deadline 2026-01-31 10:00 UTC" in ds["final-report"].basis


def test_nis2_final_report_from_notice_sent(rs):
    aware = utc(2026, 1, 28, 10, 0)
    sent = utc(2026, 1, 30, 8, 15)
    ds = by_id(deadlines(rs.get("nis2"), facts(aware, notices={"nis2:notification": sent}), utc(2026, 2, 1)))
    assert ds["notification"].status == "met" and ds["notification"].sent_at == sent
    assert ds["final-report"].due == utc(2026, 2, 28, 8, 15)   # one month after the actual notice
    assert "after the 'notification' notice sent 2026-01-30 08:15 UTC" in ds["final-report"].basis
    assert ds["early-warning"].status == "overdue"             # nothing sent within 24 h


def test_notice_sent_late_is_overdue_and_says_how_late(rs):
    aware = utc(2026, 6, 1, 9, 0)
    sent = utc(2026, 6, 4, 12, 30)                             # 3 h 30 min after 72 h
    d = deadlines(rs.get("gdpr-33"), facts(aware, notices={"gdpr-33": sent}), utc(2026, 6, 10))[0]
    assert d.status == "overdue" and d.sent_at == sent
    assert d.basis.endswith("sent 2026-06-04 12:30 UTC, 3 h 30 min late")
    ok = deadlines(rs.get("gdpr-33"), facts(aware, notices={"gdpr-33": utc(2026, 6, 3)}), utc(2026, 6, 10))[0]
    assert ok.status == "met"


# --- DORA: the earlier of 4 h after classification and 24 h after awareness ---------------------


def test_dora_initial_four_hours_after_classification_when_earlier(rs):
    aware = utc(2026, 5, 4, 8, 0)
    ds = by_id(deadlines(rs.get("dora"), facts(aware, classification=aware + 2 * H), utc(2026, 5, 4, 9)))
    assert ds["initial"].due == aware + 6 * H
    assert ds["intermediate"].due == aware + 6 * H + 72 * H
    assert ds["final"].due == utc(2026, 6, 7, 14, 0)            # one month after the intermediate
    assert ds["initial"].basis.startswith("earliest of: 4 h after classification")


def test_dora_initial_24_hours_after_awareness_when_earlier(rs):
    aware = utc(2026, 5, 4, 8, 0)
    ds = by_id(deadlines(rs.get("dora"), facts(aware, classification=aware + 22 * H), utc(2026, 5, 4, 9)))
    assert ds["initial"].due == aware + 24 * H


def test_dora_initial_before_classification_and_from_sent_notice(rs):
    aware = utc(2026, 5, 4, 8, 0)
    ds = by_id(deadlines(rs.get("dora"), facts(aware), utc(2026, 5, 4, 9)))
    assert ds["initial"].due == aware + 24 * H and ds["initial"].status == "pending"
    assert "classification (not set yet)" in ds["initial"].basis
    assert "may move earlier" in ds["initial"].basis
    sent = aware + 5 * H
    ds = by_id(deadlines(rs.get("dora"), facts(aware, notices={"dora:initial": sent}), utc(2026, 5, 4, 14)))
    assert ds["initial"].status == "met"
    assert ds["intermediate"].due == sent + 72 * H


# --- awareness set after the fact ----------------------------------------------------------------


def test_later_awareness_moves_every_awareness_deadline_by_the_same_amount(rs):
    first = utc(2026, 6, 1, 9, 0)                              # no DST change nearby in any zone used
    moved = first + 5 * H + timedelta(minutes=20)
    now = utc(2026, 6, 1, 10, 0)
    for rid in ("gdpr-33", "uk-gdpr", "nis2", "hipaa", "ca-1798.82"):
        # 600 subjects: HIPAA's HHS notice runs from awareness (not the year-end annual log).
        before = deadlines(rs.get(rid), facts(first, subjects=600), now)
        after = deadlines(rs.get(rid), facts(moved, subjects=600), now)
        assert any(b.due is not None for b in before)
        for b, a in zip(before, after, strict=True):
            if b.due is not None:
                assert a.due - b.due == moved - first, (rid, b.id)


def test_backdated_awareness_makes_a_deadline_overdue(rs):
    now = utc(2026, 6, 5, 12, 0)
    detected = utc(2026, 6, 4, 9, 0)
    fresh = deadlines(rs.get("gdpr-33"), facts(detected), now)[0]
    assert fresh.status == "pending" and fresh.remaining == timedelta(hours=45)
    # A responder records that the organisation was aware four days earlier (a ticket from 31 May).
    backdated = deadlines(rs.get("gdpr-33"), facts(utc(2026, 5, 31, 9, 0)), now)[0]
    assert backdated.status == "overdue"
    assert backdated.due == utc(2026, 6, 3, 9, 0)
    assert backdated.remaining == -timedelta(hours=51)


# --- statuses ------------------------------------------------------------------------------------


def test_waiting_no_fixed_time_and_not_applicable(rs):
    aware = utc(2026, 6, 1, 9, 0)
    sec = deadlines(rs.get("sec-8k"), facts(aware), utc(2026, 6, 2))[0]
    assert sec.status == "waiting" and sec.due is None
    assert "materiality (not set yet)" in sec.basis
    art34 = deadlines(rs.get("gdpr-34"), facts(aware), utc(2026, 6, 2))[0]
    assert art34.status == "no fixed time" and art34.due is None
    assert art34.basis.startswith("without undue delay")
    ca = by_id(deadlines(rs.get("ca-1798.82"), facts(aware, by_jur={"US-CA": 500}), utc(2026, 6, 2)))
    assert ca["attorney-general"].status == "not applicable"
    assert "500 data subjects in US-CA" in ca["attorney-general"].basis
    ca = by_id(deadlines(rs.get("ca-1798.82"), facts(aware, by_jur={"US-CA": 501}), utc(2026, 6, 2)))
    assert ca["attorney-general"].status == "pending"
    assert ca["attorney-general"].due == ca["residents"].due + timedelta(days=15)


def test_condition_undecided_still_gives_a_deadline(rs):
    aware = utc(2026, 6, 1, 9, 0)
    f = IncidentFacts(1, "t", "triaged", "high", aware, {"awareness": aware, "detection": aware},
                      subject_jurisdictions=("US", "US-CA"), data_subjects=900, org=OrganisationConfig())
    ag = by_id(deadlines(rs.get("ca-1798.82"), f, aware))["attorney-general"]
    assert ag.status == "pending" and ag.due is not None
    assert "undecided: the number of data subjects in US-CA is unknown" in ag.basis


def test_hipaa_annual_report_counts_from_year_end(rs):
    aware = utc(2026, 6, 10, 14, 0)
    ds = by_id(deadlines(rs.get("hipaa"), facts(aware, subjects=120), utc(2026, 6, 11)))
    assert ds["hhs"].status == "not applicable"
    # End of 2026 in New York + 60 days = 2027-03-02 00:00 EST (the end of 1 March).
    assert ds["hhs-annual"].due == datetime(2027, 3, 2, 0, 0, tzinfo=NY)
    assert ds["individuals"].due == datetime(2026, 8, 9, 10, 0, tzinfo=NY)
    big = by_id(deadlines(rs.get("hipaa"), facts(aware, subjects=120, by_jur={"US-TX": 501}), utc(2026, 6, 11)))
    assert big["media"].status == "pending"


def test_naive_datetimes_are_rejected(rs):
    aware = utc(2026, 6, 1, 9, 0)
    with pytest.raises(ValueError, match="naive"):
        deadlines(rs.get("gdpr-33"), facts(aware), datetime(2026, 6, 2))
    with pytest.raises(ValueError, match="naive"):
        timecalc.add_hours(datetime(2026, 6, 2), 72)
    with pytest.raises(ValueError, match="naive"):
        deadlines(rs.get("gdpr-33"), facts(datetime(2026, 6, 1, 9)), aware)
    with pytest.raises(ValueError):
        timecalc.add_calendar_days(aware, -1, BRU)


def test_unknown_calendar_in_timecalc():
    with pytest.raises(ValueError, match="did you mean 'BR'"):
        timecalc.check_calendar("br")
    with pytest.raises(ValueError, match="unknown holiday calendar 'QQ'"):
        timecalc.check_calendar("QQ")
    with pytest.raises(ValueError, match="subdivision 'XX'"):
        timecalc.check_calendar("US", "XX")
    timecalc.check_calendar("BR", "SP")                          # a state: accepted
    # A state holiday counts only with the subdivision: São Paulo's 9 July (Revolução Constitucionalista).
    assert timecalc.is_business_day(date(2026, 7, 9), "BR")
    assert not timecalc.is_business_day(date(2026, 7, 9), "BR", "SP")


def test_australian_assessment_runs_from_awareness_when_no_earlier_suspicion(rs):
    """Aware of a breach means reasonable grounds to suspect one (s 26WH): the 30 days run
    from awareness unless a suspicion was recorded earlier; never "waiting"."""
    aware = utc(2026, 3, 28, 22, 30)
    syd = ZoneInfo("Australia/Sydney")
    ds = by_id(deadlines(rs.get("au-ndb"), facts(aware), utc(2026, 11, 28)))
    assert ds["assessment"].due == (aware.astimezone(syd) + timedelta(days=30)).astimezone(UTC) == utc(2026, 4, 27, 23, 30)
    assert ds["assessment"].status == "overdue"
    earlier = aware - timedelta(days=5)
    ds = by_id(deadlines(rs.get("au-ndb"), facts(aware, suspicion=earlier), utc(2026, 3, 29)))
    assert ds["assessment"].due == (earlier.astimezone(syd) + timedelta(days=30)).astimezone(UTC)


def test_singapore_pdpc_deadline_without_a_recorded_assessment(rs):
    """3 days after the assessment; none recorded: at the latest 33 days after awareness."""
    aware = utc(2026, 5, 4, 8, 0)
    sg = ZoneInfo("Asia/Singapore")
    f = facts(aware, responder={"significant_harm": True}, by_jur={"SG": 10})
    ds = by_id(deadlines(rs.get("sg-pdpa"), f, utc(2026, 5, 5)))
    assert ds["pdpc"].due == (aware.astimezone(sg) + timedelta(days=33)).astimezone(UTC)
    ds = by_id(deadlines(rs.get("sg-pdpa"), facts(aware, responder={"significant_harm": True}, by_jur={"SG": 10},
                                                  assessment=aware + 24 * H), utc(2026, 5, 5)))
    assert ds["pdpc"].due == (aware.astimezone(sg) + timedelta(days=4)).astimezone(UTC)


def test_a_total_too_small_decides_a_condition_on_an_unknown_part(rs):
    """Five data subjects in all, some in California: "more than 500 in US-CA" cannot hold. It
    used to stay undecided, so the Attorney General deadline was reported overdue and sent as
    DEADLINE MISSED for a 5-subject incident."""
    aware = utc(2026, 6, 1, 9, 0)
    f = IncidentFacts(1, "t", "triaged", "high", aware, {"awareness": aware, "detection": aware},
                      subject_jurisdictions=("US", "US-CA"), data_subjects=5, org=OrganisationConfig())
    ag = by_id(deadlines(rs.get("ca-1798.82"), f, aware))["attorney-general"]
    assert ag.status == "not applicable" and ag.due is None
    assert "at most 5 data subjects in total" in ag.basis
