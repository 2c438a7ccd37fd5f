"""``spreadedge spreads``: market.current_spreads as a readable table.

The spreads are computed in SQL (see functions/44_market_spreads.sql); this module filters the
view's rows by symbol and minimum net bps in the query and lays them out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from spreadedge import textable

COLUMNS = (
    "symbol",
    "market_type",
    "buy_exchange",
    "ask",
    "sell_exchange",
    "bid",
    "gross_bps",
    "net_bps",
    "oldest_quote_at",
)
TEXT_COLUMNS = ("symbol", "market_type", "buy_exchange", "sell_exchange", "oldest_quote_at")
HEADERS = {
    "market_type": "market",
    "buy_exchange": "buy on",
    "sell_exchange": "sell on",
    "oldest_quote_at": "as of",
}


def spread_rows(
    conn: psycopg.Connection[Any],
    *,
    symbol: str | None,
    min_bps: Decimal | None,
    max_age: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of market.current_spreads, best net spread first; ``max_age`` (an interval): only
    quotes younger than it count (the view's spreadedge.max_quote_age, for this read alone).

    why for the transaction, not the session: behind a pooler in transaction pooling (PgBouncer)
    a session's max_quote_age landed on whichever server connection the pooler lent, for its
    other clients' spreads, and was missing from the read that followed it
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if max_age is not None:
            cur.execute("select pg_catalog.set_config('spreadedge.max_quote_age', %s, true)", (max_age,))
        cur.execute(
            "select * from market.current_spreads"
            " where (%(symbol)s::text is null or symbol = upper(btrim(%(symbol)s)))"
            "   and (%(min_bps)s::numeric is null or net_bps >= %(min_bps)s)"
            " order by net_bps desc, symbol, market_type",
            {"symbol": symbol, "min_bps": min_bps},
        )
        return cur.fetchall()


def check_pair(conn: psycopg.Connection[Any], symbol: str) -> None:
    """Raise the project error for a BASE/QUOTE symbol no instrument trades or that is malformed.

    Why market.spread_opportunities over an empty period: it validates the symbol in SQL
    (internal.find_pair: 22S09 for another form, 23S20 when nothing trades the pair), returns no
    row, and every role that reads market.current_spreads may call it.
    """
    conn.execute(
        "select from market.spread_opportunities(symbol => %(symbol)s, since => now(), until => now())",
        {"symbol": symbol},
    )


def _cell(value: Any) -> str:
    if isinstance(value, Decimal):
        # why not normalize(): it rounds to 28 significant digits (see textable.decimal_text)
        return textable.decimal_text(value)
    if isinstance(value, datetime):
        # why UTC: the session's TimeZone (the server's, or PGTZ) would show another clock, unlabelled
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def as_table(rows: list[dict[str, Any]], *, symbol: str | None = None) -> str:
    """A plain aligned table of the spreads; numbers right-aligned. ``symbol``: the one asked for."""
    if not rows:
        if symbol is not None and "/" not in symbol:
            # why: the API and the exchanges write BTCUSDT, which names no asset pair here
            return (
                f"no current spreads for {symbol!r}: spreads are by asset pair,"
                " written BASE/QUOTE (e.g. BTC/USDT)"
            )
        return "no current spreads (no quotes, or none above --min-bps or within --max-age)"
    cells = [[_cell(row[c]) for c in COLUMNS] for row in rows]
    headers = [HEADERS.get(c, c) for c in COLUMNS]
    # in terminal columns, not characters (see textable.width)
    widths = [max(textable.width(h), *(textable.width(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            textable.pad(v, w, right=c not in TEXT_COLUMNS)
            for v, w, c in zip(values, widths, COLUMNS, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
