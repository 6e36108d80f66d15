"""Search in the alert history: labels (exact pairs), text in annotations, status, severity and
time range, on SQLite and PostgreSQL; on PostgreSQL the text and label filters can use the GIN
indexes of migration 0009 (the speed over 1M occurrences is tests/perf/bench_alerts.py's)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queries import AlertFilter, AlertHistory
from llmgw.alerts.store import ALERTS, AlertStore
from llmgw.config import AlertsSettings
from tests.alerts.amdata import T0, am_alert, am_payload, later


def _fill(engine: Engine) -> None:
    store = AlertStore(engine, AlertsSettings(), now=lambda: T0 + timedelta(hours=1))
    store.ingest(
        parse_delivery(
            am_payload(
                am_alert(
                    "HighCPU",
                    labels={"job": "node"},
                    annotations={"summary": "CPU at 97% on db-primary"},
                ),
                am_alert(
                    "HighCPU",
                    labels={"job": "node2"},
                    starts=later(60),
                    annotations={"summary": "CPU 50% on cache_1"},
                ),
                am_alert(
                    "DiskFull",
                    labels={"severity": "warning", "job": "node"},
                    starts=later(7200),
                    annotations={"description": "Disk 100% full"},
                ),
            )  # fmt: skip
        )
    )
    store.ingest(
        parse_delivery(
            am_payload(
                am_alert(
                    "HighCPU",
                    status="resolved",
                    labels={"job": "node2"},
                    starts=later(60),
                    ends=later(600),
                    annotations={"summary": "CPU 50% on cache_1"},
                ),
            )  # fmt: skip
        )
    )


def _names(h: AlertHistory, **kw: object) -> list[tuple[str, str | None]]:
    rows = h.list(AlertFilter(**kw), limit=50)["data"]  # type: ignore[arg-type]
    return sorted((r["alertname"], r["labels"].get("job")) for r in rows)


def test_every_filter_finds_exactly_its_alerts(engine: Engine) -> None:
    _fill(engine)
    h = AlertHistory(engine)
    assert len(_names(h)) == 3
    # a label pair is exact: job=node is not job=node2
    assert _names(h, labels=("job=node",)) == [("DiskFull", "node"), ("HighCPU", "node")]
    assert _names(h, labels=("job=node", "severity=warning")) == [("DiskFull", "node")]
    assert _names(h, labels=("job=nod",)) == []
    # text in annotations, case-insensitive; % and _ are literal characters
    assert _names(h, q="DB-PRIMARY") == [("HighCPU", "node")]
    assert _names(h, q="100% full") == [("DiskFull", "node")]
    assert _names(h, q="%") == [("DiskFull", "node"), ("HighCPU", "node"), ("HighCPU", "node2")]
    assert _names(h, q="cache_1") == [("HighCPU", "node2")]
    assert _names(h, q="cache-1") == []
    # status, severity, both, and the time range (by startsAt)
    assert _names(h, status="resolved") == [("HighCPU", "node2")]
    assert _names(h, severity="warning") == [("DiskFull", "node")]
    assert _names(h, status="firing", severity="critical") == [("HighCPU", "node")]
    assert _names(h, until=later(3600)) == [("HighCPU", "node"), ("HighCPU", "node2")]
    # a window: active in it (started before its end, seen after its start)
    seen = T0 + timedelta(hours=1)
    assert _names(h, since=seen, until=later(30)) == [("HighCPU", "node")]
    assert _names(h, since=seen + timedelta(seconds=1), until=later(7300)) == []
    assert len(_names(h, since=seen - timedelta(days=1), until=later(7300))) == 3
    assert _names(h, q="cpu", status="firing", labels=("job=node",), until=later(30)) == [
        ("HighCPU", "node")
    ]


def test_stats_counts_every_occurrence_of_the_period_once(engine: Engine) -> None:
    """``stats()`` (one pass over the period, summed in Python) agrees with counting the rows
    one by one: by status, severity, category, classification and hour, and the top label sets."""
    _fill(engine)
    store = AlertStore(engine, AlertsSettings(), now=lambda: T0 + timedelta(hours=2))
    store.ingest(  # a second firing of HighCPU/node: two fires of one label set
        parse_delivery(am_payload(am_alert("HighCPU", labels={"job": "node"}, starts=later(3700))))
    )
    h = AlertHistory(engine, now=lambda: T0 + timedelta(hours=3))
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(sa.select(ALERTS.c.id).order_by(ALERTS.c.id))]
    h.save_classification(ids[0], "ok", {"severity": "critical", "category": "capacity"}, None)
    h.save_classification(ids[1], "timeout", None, "slow")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ALERTS)).all()
    want: dict[str, dict[str, int]] = {"status": {}, "severity": {}, "category": {}}
    hours: dict[str, dict[str, int]] = {}
    cls: dict[str, int] = {}
    for r in rows:
        for name, value in (
            ("status", r.status),
            ("severity", r.severity),
            ("category", r.category),
        ):
            key = value if value is not None else "none"
            want[name][key] = want[name].get(key, 0) + 1
        cls[r.cls_status] = cls.get(r.cls_status, 0) + 1
        t = r.starts_at.strftime("%Y-%m-%dT%H:00:00Z")
        hours.setdefault(t, {})
        hours[t][r.severity or "none"] = hours[t].get(r.severity or "none", 0) + 1
    got = h.stats(since=T0 - timedelta(days=1))
    assert got["total"] == len(rows) == 4
    assert got["by_status"] == want["status"] == {"firing": 3, "resolved": 1}
    assert got["by_severity"] == want["severity"]
    assert got["by_category"] == want["category"] == {"capacity": 1, "none": 3}
    assert got["by_classification"] == cls == {"ok": 1, "timeout": 1, "pending": 2}
    assert got["over_time"] == [{"t": t, **hours[t]} for t in sorted(hours)]
    assert len(got["over_time"]) == 3
    assert [(t["alertname"], t["fires"]) for t in got["top_flapping"]] == [("HighCPU", 2)]
    # the period: only occurrences delivered since ``since`` (the second HighCPU firing)
    assert h.stats(since=T0 + timedelta(hours=1, minutes=30))["by_status"] == {"firing": 1}


@pytest.mark.postgres
def test_a_listing_that_ends_at_until_pages_like_a_plain_scan(pg_url: str) -> None:
    """On PostgreSQL a listing with ``until`` is read in two parts (the occurrences active at
    ``until``, then those last seen before it): the pages are exactly those of filtering and
    sorting every row, including an occurrence that started before ``until`` and was still
    seen after it, and one that starts exactly at it (not in the window)."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(pg_url)
    try:
        upgrade(engine)
        _fill(engine)
        store = AlertStore(engine, AlertsSettings(), now=lambda: T0 + timedelta(hours=5))
        store.ingest(  # HighCPU/node seen again at T0+5h: active across every until below
            parse_delivery(am_payload(am_alert("HighCPU", labels={"job": "node"})))
        )
        store.ingest(parse_delivery(am_payload(am_alert("Edge", starts=later(90)))))
        h = AlertHistory(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(ALERTS)).all()
        seen = T0 + timedelta(hours=1)
        for since, until in (
            (seen - timedelta(days=1), later(90)),
            (None, later(90)),
            (seen, later(30)),
            (None, later(7300)),
            (seen + timedelta(hours=2), later(7300)),
        ):
            want = sorted(
                (
                    r
                    for r in rows
                    if r.starts_at < until and (since is None or r.last_seen >= since)
                ),
                key=lambda r: (r.last_seen, r.id),
                reverse=True,
            )
            got: list[int] = []
            cursor = None
            while True:
                page = h.list(AlertFilter(since=since, until=until), limit=1, cursor=cursor)
                got += [r["id"] for r in page["data"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert got == [r.id for r in want], (since, until)
        assert _names(h, since=seen, until=later(30)) == [("HighCPU", "node")]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_text_and_label_search_can_use_the_gin_indexes(pg_url: str) -> None:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(pg_url)
    try:
        upgrade(engine)
        _fill(engine)
        with engine.connect() as conn:
            names = set(
                conn.execute(
                    sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'alerts'")
                ).scalars()
            )
        assert {"ix_alerts_search_trgm", "ix_alerts_labels", "ix_alerts_active"} <= names
        where = {
            "ix_alerts_search_trgm": AlertFilter(q="db-primary"),
            "ix_alerts_labels": AlertFilter(labels=("job=node",)),
            "ix_alerts_active": AlertFilter(since=T0, until=later(60)),
        }
        for index, f in where.items():
            stmt = sa.select(ALERTS.c.id).where(*f.where())
            if f.until is not None:  # the list's two-part query (the active part uses it)
                stmt = AlertHistory._split_at_until(f.where(), f.until, 51)
            sql = stmt.compile(engine)
            params = {
                k: json.dumps(v) if isinstance(v, dict) else v
                for k, v in sql.construct_params().items()
            }
            with engine.connect() as conn:
                conn.exec_driver_sql("SET enable_seqscan = off")  # 3 rows: force the choice
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}", params).all())
            assert index in plan, plan
    finally:
        engine.dispose()
