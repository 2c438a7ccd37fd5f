"""`make bench` measures what its rows say: its maths, its load generator's counts, its checks."""

from __future__ import annotations

import math

import psycopg
import pytest
from bench import api, monitor
from bench.latency import percentile, summarize
from bench.pgbench import PgbenchRun
from bench.report import Goal, Row
from bench.sqlfile import statements

# wrk 4.x's report, as `wrk --latency` prints it, of a run where some responses failed
WRK_WITH_FAILURES = """\
Running 10s test @ http://127.0.0.1:8000/api/v1/historical/orders?symbol=BTCUSDT&limit=100
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    71.74ms   40.22ms   1.02s    70.60%
    Req/Sec   220.05     40.65   343.00     69.50%
  Latency Distribution
     50%   63.85ms
     75%   76.66ms
     90%   92.65ms
     99%    1.02s
  4000 requests in 10.00s, 55.65MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 1000
Requests/sec:    400.00
Transfer/sec:      5.55MB
"""


def test_api_rate_counts_only_successful_responses() -> None:
    result = api._parse_wrk(WRK_WITH_FAILURES, connections=32, duration_s=10)
    # 4,000 responses in 10 s, 1,000 of them non-2xx: 300 successful a second, not wrk's 400
    assert result.requests_per_s == 300.0
    assert result.requests == 4000
    assert result.non_2xx == 1000


def test_api_socket_errors_are_reported() -> None:
    result = api._parse_wrk(WRK_WITH_FAILURES, connections=32, duration_s=10)
    assert result.socket_errors == 5
    assert result.elapsed_s == 10.0


def test_api_rate_divides_by_the_time_wrk_ran() -> None:
    text = WRK_WITH_FAILURES.replace("4000 requests in 10.00s", "4000 requests in 8.00s")
    assert api._parse_wrk(text, connections=32, duration_s=10).requests_per_s == 375.0


def test_api_latency_in_seconds_and_minutes_is_read() -> None:
    assert api._parse_wrk(WRK_WITH_FAILURES, connections=32, duration_s=10).p99_ms == 1020.0
    assert api._latency_ms("     99%    1.50m\n", "99") == 90_000.0


def test_percentile_is_the_nearest_rank() -> None:
    for n in range(1, 2001):
        values = [float(v) for v in range(n, 0, -1)]
        for fraction in (0.5, 0.99):
            assert percentile(values, fraction) == math.ceil(round(fraction * n, 9)), (n, fraction)


def test_summarize_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert summarize([4.0, 1.0, 3.0, 2.0]).median_ms == 2.5


@pytest.mark.parametrize(
    ("goal", "measured", "baseline", "met"),
    [
        (Goal("min_ratio", 0.8), 80.0, 100.0, True),
        (Goal("min_ratio", 0.8), 79.9, 100.0, False),
        (Goal("min_ratio", 0.8), 80.0, 0.0, False),
        (Goal("max_value", 5.0), 5.0, None, True),
        (Goal("max_value", 5.0), 5.01, None, False),
        (Goal("min_value", 2000.0), 2000.0, None, True),
        (Goal("min_value", 2000.0), 1999.9, None, False),
    ],
)
def test_goals_compare_in_their_direction(
    goal: Goal, measured: float, baseline: float | None, met: bool
) -> None:
    row = Row("k", "label", measured, "tps", baseline, goal=goal)
    assert row.met is met
    assert row.as_json()["met"] is met


def test_risk_bench_counts_the_orders_its_limits_rejected(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for stmt in statements("fixtures.sql"):
            conn.execute(stmt, {"strategies": 2})
        conn.execute("select monitor.set_risk_limit(strategy => 'live1', max_order_notional => 100)")
        for side in ("buy", "sell"):  # 0.01 x 60,000 = 600 breaks the limit; 0.001 x 60,000 = 60 does not
            for quantity in ("0.01", "0.001"):
                conn.execute(
                    "select trading.place_order(strategy => 'live1', exchange => 'binance',"
                    " symbol => 'BTCUSDT', side => %s, quantity => %s, price => 60000)",
                    (side, quantity),
                )
        # an s* strategy's rejected order is not one of the bench's placements
        conn.execute("select monitor.set_risk_limit(strategy => 's1', max_order_notional => 100)")
        conn.execute(
            "select trading.place_order(strategy => 's1', exchange => 'binance', symbol => 'BTCUSDT',"
            " side => 'buy', quantity => 0.01, price => 60000)"
        )
    assert monitor.rejected_orders(db_url) == 2


def test_risk_row_says_how_many_orders_were_rejected() -> None:
    run = PgbenchRun(tps=100.0, latency_ms=1.0, transactions=1000, failed=0, clients=8, duration_s=10)
    result = monitor.MonitorResult(run, run, run, 5, 3, [("off", run)], summarize([1.0, 2.0]), 1000)
    row = monitor.result_rows(result, clients=8)[0]
    assert row.key == "place_order_risk_limits"
    assert "(3 orders rejected)" in row.note
    assert result.as_json()["place_order"]["rejected_orders"] == 3


def test_alert_rules_are_timed_with_the_statistics_of_their_tables(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for stmt in statements("fixtures.sql"):
            conn.execute(stmt, {"strategies": 20})
    monitor.time_evaluate(db_url, rules=40, runs=10, budget_s=5)
    with psycopg.connect(db_url) as conn:
        # -1: never analyzed (the planner then guesses the table's size)
        row = conn.execute(
            "select reltuples from pg_class where oid = 'monitor.alert_rules'::regclass"
        ).fetchone()
    assert row == (40.0,)
