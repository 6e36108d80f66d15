"""Usage reports on the rollups are exact: the same answer as counting the raw rows by hand,
before and after the rollups are refreshed, with rows arriving late, windows cutting through
hours and days, and every grouping and filter (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.storage.tables import (
    UsageRecord,
    usage_daily,
    usage_hourly,
    usage_hourly_models,
    usage_rollup_state,
)
from llmgw.usage import rollup
from llmgw.usage.reports import GROUPS, model_label, plan, usage_stats

_u: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
END = datetime(2026, 12, 3, 9, 40, 12, 345678, tzinfo=UTC)
MODELS = [
    ("yandex", "yandexgpt-lite", "rc"),
    ("yandex", "yandexgpt-lite", "latest"),
    ("openai", "gpt-4o-mini", None),
    (None, None, None),  # refused before routing
]


def _rows(
    rnd: random.Random, n: int, start: int, keys: list[uuid.UUID | None]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        provider, model, version = rnd.choice(MODELS)
        status = rnd.choice([200, 200, 200, 429, 502])
        out.append(
            {
                "request_id": f"r{i}",
                "created_at": END - timedelta(seconds=rnd.uniform(0, 3 * 86400)),
                "key_id": (key := rnd.choice(keys)),
                "user_id": key,  # one user per key is enough here
                "endpoint": "chat",
                "provider": provider,
                "model": model,
                "model_version": version,
                "stream": False,
                "prompt_tokens": rnd.randint(0, 50),
                "completion_tokens": rnd.randint(0, 50),
                "total_tokens": 0,
                "cost": Decimal(rnd.randint(0, 10**6)).scaleb(-10),
                "latency_ms": rnd.choice([0.5, 1.0, 3.3, 250.0, 251.7, 1e6])
                * rnd.uniform(0.5, 1.5),
                "status": status,
            }
        )
    for r in out:
        r["total_tokens"] = int(r["prompt_tokens"]) + int(r["completion_tokens"])
    return out


def _label(by: str, r: dict[str, Any]) -> Any:
    t = r["created_at"]
    return {
        "day": lambda: t.strftime("%Y-%m-%d"),
        "hour": lambda: t.strftime("%Y-%m-%d %H:00"),
        "model": lambda: model_label(r["provider"], r["model"], r["model_version"]),
        "version": lambda: r["model_version"],
        "provider": lambda: r["provider"],
        "key": lambda: str(r["key_id"]) if r["key_id"] else None,
        "user": lambda: str(r["user_id"]) if r["user_id"] else None,
        "status": lambda: r["status"],
    }[by]()


def _expected(
    rows: list[dict[str, Any]], by: str, since: datetime | None, until: datetime | None
) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if (since is None or r["created_at"] >= since) and (
            until is None or r["created_at"] < until
        ):
            groups[_label(by, r)].append(r)
    out = {}
    for label, rs in groups.items():
        lat = sorted(r["latency_ms"] for r in rs)
        out[label] = {
            "requests": len(rs),
            "errors": sum(r["status"] >= 400 for r in rs),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rs),
            "completion_tokens": sum(r["completion_tokens"] for r in rs),
            "total_tokens": sum(r["total_tokens"] for r in rs),
            "cost": sum((r["cost"] for r in rs), Decimal(0)).quantize(Decimal(1).scaleb(-10)),
            "avg_latency_ms": round(sum(lat) / len(lat), 2),
            "exact_p95": lat[max(math.ceil(0.95 * len(lat)) - 1, 0)],
            "min": lat[0],
            "max": lat[-1],
        }
    return out


def _check(
    engine: Engine,
    rows: list[dict[str, Any]],
    since: datetime | None,
    until: datetime | None,
    **kw: Any,
) -> None:
    for by in GROUPS:
        got = usage_stats(engine, since=since, until=until, by=by, **kw)  # type: ignore[arg-type]
        want = _expected(rows, by, since, until)
        first = {"key": "key", "user": "user"}.get(by, by)
        assert {r[first] for r in got} == set(want), by
        for r in got:
            w = want[r[first]]
            for m in (
                "requests",
                "errors",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cost",
            ):
                assert r[m] == w[m], (by, r[first], m)
            assert r["avg_latency_ms"] == pytest.approx(w["avg_latency_ms"], abs=0.011)
            # p95 from the histogram: within the bucket (x1.5) of the exact one, inside [min, max]
            assert w["min"] - 0.01 <= r["p95_latency_ms"] <= w["max"] + 0.01
            assert w["exact_p95"] / 1.5 - 0.01 <= r["p95_latency_ms"] <= w["exact_p95"] * 1.5 + 0.01


def _insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(_u), rows)


def _state(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(usage_rollup_state.c.last_id)).scalar_one())


def test_reports_are_exact_through_refreshes_late_rows_and_window_edges(engine: Engine) -> None:
    rnd = random.Random(7)
    keys: list[uuid.UUID | None] = [uuid.uuid4(), uuid.uuid4(), None]
    rows = _rows(rnd, 300, 0, keys)
    _insert(engine, rows)
    windows = [
        (None, None),
        (END - timedelta(days=2, minutes=17), None),  # cuts an hour and a day
        (END - timedelta(hours=30, seconds=5), END - timedelta(hours=2, minutes=3)),
        (END - timedelta(minutes=50), END - timedelta(minutes=10)),  # inside one hour
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)),  # one whole day
    ]
    # nothing folded yet: everything from the raw rows (refresh_at keeps it so)
    assert _state(engine) == 0
    for since, until in windows:
        _check(engine, rows, since, until, refresh_at=10**9)
    assert _state(engine) == 0
    # a report past the threshold folds the tail in first; answers are the same
    _check(engine, rows, *windows[1], refresh_at=10)
    assert _state(engine) == max_id(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(usage_hourly.c.requests))).scalar_one() == 300
    # late rows (old created_at, new ids) and new ones: the tail is read, nothing is lost
    more = _rows(rnd, 120, 300, keys)
    _insert(engine, more)
    rows += more
    for since, until in windows:
        _check(engine, rows, since, until, refresh_at=10**9)
    # filters on rollup and tail alike
    key = keys[0]
    assert key is not None
    mine = [
        r
        for r in rows
        if r["key_id"] == key and r["model"] == "yandexgpt-lite" and r["model_version"] == "rc"
    ]
    _check(
        engine,
        mine,
        windows[1][0],
        None,
        only={"key_id": key, "model": "yandex/yandexgpt-lite:rc"},
        refresh_at=10**9,
    )
    ok = [r for r in rows if r["status"] == 200 and r["provider"] == "openai"]
    _check(engine, ok, None, None, only={"status": 200, "provider": "openai"}, refresh_at=10**9)
    # a refresh in small chunks ends where one big one would
    assert rollup.refresh(engine, chunk=50) == 120
    assert _state(engine) == max_id(engine)
    for since, until in windows:
        _check(engine, rows, since, until, refresh_at=10**9)
    assert rollup.refresh(engine) == 0  # nothing new


def max_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(_u.c.id))).scalar_one())


def test_a_fold_reads_the_raw_rows_once_and_every_rollup_sums_them(engine: Engine) -> None:
    """``llmgw serve`` folds every row it records (docs/performance.md): one pass over the new
    raw rows feeds all three rollups, and each holds what the rows add up to."""
    rows = _rows(random.Random(11), 200, 0, [uuid.uuid4(), None])
    _insert(engine, rows)
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", log)
    try:
        assert rollup.refresh(engine) == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", log)
    raw = [q for q in seen if "FROM usage " in q]
    assert len(raw) == 1, raw
    with engine.connect() as conn:
        for table, per in (
            (usage_hourly, "hour"),
            (usage_hourly_models, "hour"),
            (usage_daily, "day"),
        ):
            got = conn.execute(
                sa.select(sa.func.sum(table.c.requests), sa.func.sum(table.c.lat_0),
                          sa.func.min(table.c.latency_min), sa.func.max(table.c.latency_max),
                          sa.func.count())
            ).one()  # fmt: skip
            lat = [r["latency_ms"] for r in rows]
            assert got[0] == 200 and got[1] == sum(x < 1.0 for x in lat), table.name
            assert got[2] == pytest.approx(min(lat)) and got[3] == pytest.approx(max(lat))
            fmt = "%Y-%m-%d %H" if per == "hour" else "%Y-%m-%d"
            dims: tuple[str, ...] = ("provider", "model", "model_version", "status")
            if "key_id" in table.c:
                dims += ("key_id",)
            assert got[4] == len(
                {(r["created_at"].strftime(fmt), *(r[d] for d in dims)) for r in rows}
            )


def test_by_model_tells_versions_apart_and_by_version_exists(engine: Engine) -> None:
    rows = _rows(random.Random(3), 60, 0, [None])
    _insert(engine, rows)
    got = {r["model"]: r["requests"] for r in usage_stats(engine, since=None, by="model")}
    want: dict[str, int] = defaultdict(int)
    for r in rows:
        want[model_label(r["provider"], r["model"], r["model_version"])] += 1
    assert got == want
    assert {
        "yandex/yandexgpt-lite:rc",
        "yandex/yandexgpt-lite:latest",
        "openai/gpt-4o-mini",
        "-",
    } == set(got)
    versions = {r["version"]: r["requests"] for r in usage_stats(engine, since=None, by="version")}
    assert versions == {
        v: sum(1 for r in rows if r["model_version"] == v) for v in ("rc", "latest", None)
    }


def test_plan_splits_a_window_into_days_hours_and_raw_edges() -> None:
    t = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    u = datetime(2026, 12, 4, 1, 15, tzinfo=UTC)
    days, hours, raw = plan(t, u, "model")
    assert days == (datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC))
    assert hours == [
        (datetime(2026, 12, 1, 23, tzinfo=UTC), days[0]),
        (days[1], datetime(2026, 12, 4, 1, tzinfo=UTC)),
    ]
    assert raw == [(t, hours[0][0]), (hours[1][1], u)]
    assert plan(t, u, "hour") == (None, [(hours[0][0], hours[1][1])], raw)
    assert plan(t, t + timedelta(minutes=10), "day") == (None, [], [(t, t + timedelta(minutes=10))])
    assert plan(None, None, "user") == ((None, None), [], [])


def test_p95_from_the_histogram() -> None:
    hist = [0] * 32
    assert rollup.p95(hist, None, None) is None
    hist[9] = 3  # 10, 20, 30 would not share a bucket; three equal latencies do
    assert rollup.p95(hist, 30.0, 30.0) == 30.0
    hist = [0] * 32
    hist[8] = 1  # one latency in [17.1, 25.6): clamped to itself
    assert rollup.p95(hist, 20.0, 20.0) == 20.0


def test_upgrading_a_database_with_usage_rows_from_before_the_rollups(engine: Engine) -> None:
    """A database at 0004 holding usage rows upgrades to head (0005 folds them before 0007
    creates usage_hourly_models: it failed with 'no such table') and answers exactly."""
    from llmgw.storage.schema import downgrade, upgrade

    downgrade(engine, "0004")
    rows = _rows(random.Random(12), 150, 0, [uuid.uuid4(), None])
    _insert(engine, rows)
    upgrade(engine)
    assert _state(engine) == 150
    _check(engine, rows, END - timedelta(days=2, minutes=17), None, refresh_at=10**9)


def test_migration_0007_fills_the_slim_hourly_rollup_from_the_hourly_one(engine: Engine) -> None:
    """A database upgraded past 0007 with rows already folded answers as if folded afresh."""
    from llmgw.storage.schema import downgrade, upgrade

    rows = _rows(random.Random(11), 200, 0, [uuid.uuid4(), None])
    _insert(engine, rows)
    assert rollup.refresh(engine) == 200
    downgrade(engine, "0006")
    upgrade(engine)
    assert _state(engine) == 200
    _check(engine, rows, END - timedelta(days=2, minutes=17), None, refresh_at=10**9)


def test_migration_0008_moves_token_ids_out_of_the_key_column(engine: Engine) -> None:
    """Before 0008 a token's call had its jti (as a UUID) in ``key_id``: after it, ``key_id`` is
    NULL and ``token_id`` the jti, in the rows and in the rollups already folded (summed into
    the rows without a key), and every report answers as if the rows had been written so."""
    from llmgw.storage.schema import downgrade, upgrade
    from llmgw.storage.tables import ApiKey, OAuthToken, User, usage_daily

    user, key, jti = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex
    now = END
    with engine.begin() as conn:
        conn.execute(sa.insert(User.__table__).values(  # type: ignore[attr-defined]
            id=user, email="ann@example.com", role="user", disabled=False, created_at=now))  # fmt: skip
        conn.execute(sa.insert(ApiKey.__table__).values(  # type: ignore[attr-defined]
            id=key, name="k", user_id=user, prefix="llmgw_AAAAAA", digest="d" * 64,
            created_at=now))  # fmt: skip
        conn.execute(sa.insert(OAuthToken.__table__).values(  # type: ignore[attr-defined]
            jti=jti, kind="access", user_id=user, client_id="llmgw-cli", scope="chat",
            issued_at=now, expires_at=now + timedelta(minutes=15)))  # fmt: skip
    downgrade(engine, "0007")
    rows = _rows(random.Random(8), 240, 0, [key, uuid.UUID(hex=jti), None])
    for r in rows:
        r["user_id"] = user if r["key_id"] is not None else None
    old = sa.Table(
        "usage",
        sa.MetaData(),
        *(c._copy() for c in _u.columns if c.name not in ("token_id", "finish_reason")),
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(old), rows[:200])
    with engine.begin() as conn:  # the rollups as of 0007 (without 0013's counts)
        assert rollup.refresh_in(conn, counts=False) == 200  # 200 folded, 40 in the tail
    with engine.begin() as conn:
        conn.execute(sa.insert(old), rows[200:])
    upgrade(engine)
    with engine.connect() as conn:
        got = {r.request_id: r for r in conn.execute(sa.select(_u.c.request_id, _u.c.key_id,
                                                               _u.c.token_id, _u.c.user_id))}  # fmt: skip
        for table in (usage_hourly, usage_daily):
            keys = set(conn.execute(sa.select(table.c.key_id).distinct()).scalars())
            assert keys <= {key, rollup.NO_ID}, table.name
    for r in rows:
        g = got[r["request_id"]]
        if r["key_id"] == uuid.UUID(hex=jti):
            assert (g.key_id, g.token_id, g.user_id) == (None, jti, user)
            r["key_id"] = None  # what the reports must now say
        else:
            assert (g.key_id, g.token_id) == (r["key_id"], None)
    assert sum(r["key_id"] is None and r["user_id"] == user for r in rows) > 50
    _check(engine, rows, END - timedelta(days=2, minutes=17), None, refresh_at=10**9)
    _check(engine, rows, None, None, refresh_at=10**9)


def test_sqlite_reads_only_the_raw_rows_at_the_edges_and_in_the_tail(engine: Engine) -> None:
    """A 30-day window reads whole hours and days from the rollups and, from ``usage``, an index
    range under an hour wide at each edge and the ids past the watermark: never every raw row
    of the window (SQLite, offered both indexes in one OR, ranged over the whole window)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite query plan")
    from llmgw.usage.reports import _statement

    stmt = _statement("model", "sqlite", END - timedelta(days=30), None, {}, 100, True)
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        steps = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    on_usage = [s for s in steps if " usage " in f"{s} "]
    assert on_usage == [
        "SEARCH usage USING INDEX ix_usage_created_at (created_at>? AND created_at<?)",
        "SEARCH usage USING INTEGER PRIMARY KEY (rowid>?)",
    ], steps


def test_a_fold_buckets_latencies_on_the_bounds_as_the_raw_histogram_does(engine: Engine) -> None:
    """The fold finds each row's latency bucket by a binary search over the bounds and
    pivots the histogram from the groups: every bound, and just under it, lands where the
    reports' 32 cases over raw rows put it, in the hourly rollups and in the daily one
    (folded from the same groups), with streamed and truncated counted alike."""
    eps = [b * (1 - 1e-12) for b in rollup.BOUNDS]
    lat = [0.0, *rollup.BOUNDS, *eps, 1e12]
    t0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    rows = [
        {
            "request_id": f"b{i}",
            "created_at": t0 + timedelta(hours=i % 3),
            "provider": "p",
            "model": "m",
            "stream": i % 2 == 0,
            "finish_reason": "length" if i % 5 == 0 else "stop",
            "latency_ms": x,
            "status": 200,
        }
        for i, x in enumerate(lat)
    ]
    _insert(engine, rows)
    assert rollup.refresh(engine) == len(rows)
    hist = [f"lat_{k}" for k in range(32)]
    with engine.connect() as conn:
        raw = conn.execute(
            sa.select(*rollup.histogram_columns(_u.c.latency_ms), *rollup.count_columns())
        ).one()
        for table in (usage_hourly, usage_hourly_models, usage_daily):
            got = conn.execute(
                sa.select(*(sa.func.sum(table.c[h]) for h in [*hist, "streamed", "truncated"]))
            ).one()
            assert list(got) == list(raw), table.name
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_daily)).scalar() == 1
    assert list(raw[:32]) == [2] * 32  # each bucket: its lower bound (or 0) and just under its top


def test_several_groupings_from_one_statement_match_the_raw_rows(engine: Engine) -> None:
    """``usage_stats_many`` (a report's sections: by key, provider, model, the failed requests
    by model) gives each grouping's numbers as one ``usage_stats`` call does, and as the raw rows
    counted by hand: rollups, window edges and the unfolded tail alike."""
    from llmgw.usage.reports import usage_stats_many

    rnd = random.Random(11)
    keys: list[uuid.UUID | None] = [uuid.uuid4(), uuid.uuid4(), None]
    rows = _rows(rnd, 240, 0, keys)
    _insert(engine, rows)
    rollup.refresh(engine)
    more = _rows(rnd, 60, 240, keys)  # the tail, late rows among them
    _insert(engine, more)
    rows += more
    groups: list[Any] = [(by, {}) for by in GROUPS if by not in ("day", "hour")]
    groups.append(("model", {"failed": True}))
    for since, until in [
        (None, None),
        (END - timedelta(days=2, minutes=17), END - timedelta(hours=1, minutes=5)),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)),
    ]:
        got = usage_stats_many(
            engine, since=since, until=until, groups=groups, refresh_at=10**9, currencies={}
        )
        for (by, only), answer in zip(groups, got, strict=True):
            one = usage_stats(
                engine,
                since=since,
                until=until,
                by=by,
                only=only,
                refresh_at=10**9,
                currencies={},
            )
            assert [{**r, "avg_latency_ms": 0} for r in answer] == [
                {**r, "avg_latency_ms": 0} for r in one
            ], by
            assert [r["avg_latency_ms"] for r in answer] == pytest.approx(
                [r["avg_latency_ms"] for r in one], abs=0.011
            )
            mine = [r for r in rows if r["status"] >= 400] if only else rows
            want = _expected(mine, by, since, until)
            first = {"key": "key", "user": "user"}.get(by, by)
            assert {r[first]: (r["requests"], r["errors"], r["total_tokens"]) for r in answer} == {
                k: (w["requests"], w["errors"], w["total_tokens"]) for k, w in want.items()
            }, by
    with pytest.raises(ValueError):
        usage_stats_many(engine, since=None, groups=[("day", {})])


def _rollup_totals(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(
                conn.execute(
                    sa.select(
                        sa.func.sum(t.c.requests),
                        sa.func.sum(t.c.prompt_tokens),
                        sa.func.sum(t.c.cost_units),
                        sa.func.sum(t.c.lat_0),
                    )
                ).one()
            )  # fmt: skip
            for t in (usage_hourly, usage_hourly_models, usage_daily)
        ]


def test_sqlite_writers_go_on_while_a_fold_reads_the_new_rows(engine: Engine) -> None:
    """On SQLite a fold reads the new raw rows before it takes the database's one write lock:
    a usage insert made while the raw pass is under way commits at once (before, it waited for
    the whole fold, and under load the gateway's writes outwaited their busy timeout), and the
    rollups stay exact: that row is folded by the next refresh, not lost or counted twice."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    import sqlite3

    rows = _rows(random.Random(21), 150, 0, [uuid.uuid4(), None])
    _insert(engine, rows)
    late = _rows(random.Random(22), 1, 500, [None])[0]
    committed: list[int] = []

    def during(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO usage_fold_delta") and not committed:
            other = sqlite3.connect(str(engine.url.database), timeout=0)  # no waiting at all
            try:
                other.execute(
                    "INSERT INTO usage (request_id, created_at, endpoint, stream, prompt_tokens,"
                    " completion_tokens, total_tokens, cost, latency_ms, status)"
                    " VALUES (?, ?, 'chat', 0, 3, 4, 7, '0.0000000010', 0.5, 200)",
                    (late["request_id"], late["created_at"].strftime("%Y-%m-%d %H:%M:%S.%f")),
                )
                other.commit()
                committed.append(1)
            finally:
                other.close()

    sa.event.listen(engine, "after_cursor_execute", during)
    try:
        assert rollup.refresh(engine) == 150
    finally:
        sa.event.remove(engine, "after_cursor_execute", during)
    assert committed == [1]
    assert _state(engine) == 150  # the row inserted meanwhile is past what this fold read
    assert rollup.refresh(engine) == 1
    want = (151, sum(r["prompt_tokens"] for r in rows) + 3)
    for got in _rollup_totals(engine):
        assert got[:2] == want


def test_sqlite_a_fold_that_another_refresh_overtakes_adds_nothing(engine: Engine) -> None:
    """Two refreshes on SQLite (the server's and a report's, say) read the same new rows; the
    one whose compare-and-set of ``last_id`` comes second adds nothing: every row is in the
    rollups once."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's two-step fold")
    rows = _rows(random.Random(23), 120, 0, [uuid.uuid4(), None])
    _insert(engine, rows)
    inner: list[int] = []

    def overtake(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO usage_fold_delta") and not inner:
            inner.append(0)
            inner[0] = rollup.refresh(engine)  # another connection of the pool folds first

    sa.event.listen(engine, "after_cursor_execute", overtake)
    try:
        assert rollup.refresh(engine) == 0
    finally:
        sa.event.remove(engine, "after_cursor_execute", overtake)
    assert inner == [120] and _state(engine) == 120
    lat = [r["latency_ms"] for r in rows]
    for got in _rollup_totals(engine):
        assert got == (120, sum(r["prompt_tokens"] for r in rows),
                       sum(int(round(r["cost"] * 10**10)) for r in rows),
                       sum(x < 1.0 for x in lat))  # fmt: skip
