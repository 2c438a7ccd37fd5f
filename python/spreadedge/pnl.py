"""``spreadedge pnl``: trading.pnl_summary as a readable table or as JSON.

The unrealized PnL (last column) is that of the positions open now, so it is empty for a period
that ends before now.

The numbers come from SQL as they are; this module only lays them out (money columns shown in the
table with two decimals when the row's quote asset is a currency counted in cents, eight for any
other quote asset (BTC, ETH, BNB...), rounded half away from zero as PostgreSQL's round() does;
exact in JSON).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from spreadedge import textable

KEY_COLUMNS = ("strategy_name", "exchange", "symbol", "day", "quote_asset")
MONEY_COLUMNS = ("notional", "fees", "realized_pnl_gross", "funding", "realized_pnl", "unrealized_pnl")
# Quote assets whose amounts are counted in cents: fiat currencies and the stablecoins pegged to
# them. why a list of these, not of the others: an amount in any other quote asset (BTC, ETH, BNB,
# one listed tomorrow) gets eight decimals, so none is ever hidden; at two decimals an ETH/BTC
# strategy's whole net PnL (0.0041 BTC, hundreds of dollars) showed as 0.00
CENTS_QUOTE_ASSETS = frozenset(
    {"USD", "EUR", "GBP", "CHF", "JPY", "AUD", "CAD", "TRY", "BRL"}
    | {"USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USDP", "DAI", "PYUSD", "USDD", "EURC", "EURT"}
)
CENTS_PLACES = 2
# a satoshi: the smallest amount exchanges quote BTC in (and more than ETH and BNB quotes need)
CRYPTO_PLACES = 8
HEADERS = {
    "strategy_name": "strategy",
    "quote_asset": "quote",
    "realized_pnl_gross": "gross pnl",
    "realized_pnl": "net pnl",
    "unrealized_pnl": "unrealized pnl",
}


def iso_moment(text: str) -> datetime:
    """An ISO 8601 date or time as an aware datetime, UTC when it has no offset; ValueError if it
    is none. The CLI's one reader of times (``pnl --since/--until``, ``restore --target-time``)."""
    text = text.strip()
    # why: ISO 8601 and RFC 3339 let UTC be a lower-case z, as PostgreSQL and the REST API read
    # it; fromisoformat takes only Z, and 2026-12-01T00:00:00z was refused
    if text.endswith("z"):
        text = text[:-1] + "Z"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Moment(click.ParamType):
    """An ISO 8601 date or time as an aware UTC datetime: UTC unless it carries an offset (or Z)."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = iso_moment(str(value))
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date or time (2024-01-31, 2024-01-31T14:30,"
                    " 2024-01-31T14:30:00+02:00; UTC unless it has an offset)",
                    param,
                    ctx,
                )
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            # why astimezone, not replace: 12:00+02:00 is 10:00 UTC, not 12:00 UTC
            return parsed.astimezone(UTC)
        except OverflowError:
            # why: 9999-12-31T23:00-05:00 is in year 10000 in UTC, which Python cannot hold; it
            # raised OverflowError with a traceback
            self.fail(f"{value!r} is out of range in UTC (0001-01-01 to 9999-12-31)", param, ctx)


MOMENT = Moment()


def pnl_rows(
    conn: psycopg.Connection,
    *,
    strategy: str | None,
    since: datetime | None,
    until: datetime | None,
    group_by: str,
) -> list[dict[str, Any]]:
    """Rows of trading.pnl_summary for these arguments."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from trading.pnl_summary(strategy => %s, since => %s, until => %s, group_by => %s)",
            (strategy, since, until, group_by),
        )
        return cur.fetchall()


def money_places(quote_asset: str | None) -> int:
    """The decimals a money amount in ``quote_asset`` is shown with in the table."""
    return CENTS_PLACES if (quote_asset or "").upper() in CENTS_QUOTE_ASSETS else CRYPTO_PLACES


def _cell(column: str, value: Any, places: int = CENTS_PLACES) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        if column in MONEY_COLUMNS:
            # why the context and "z": a format spec rounds half to even by default (0.125 showed
            # as 0.12, where round(0.125, 2) in SQL is 0.13), and a loss under half a cent showed
            # as -0.00
            with localcontext(rounding=ROUND_HALF_UP):
                return f"{value:z,.{places}f}"
        # why not normalize(): it rounds to 28 significant digits (see textable.decimal_text)
        return textable.decimal_text(value)
    return str(value)


def as_table(rows: list[dict[str, Any]]) -> str:
    """A plain aligned table; key columns that are empty in every row are left out."""
    if not rows:
        return "no trades, funding or open positions in this period"
    columns = [c for c in rows[0] if c not in KEY_COLUMNS or any(r[c] is not None for r in rows)]
    cells = [[_cell(c, r[c], money_places(r.get("quote_asset"))) for c in columns] for r in rows]
    headers = [HEADERS.get(c, c) for c in columns]
    return textable.render(headers, cells, [c not in KEY_COLUMNS for c in columns])


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        # why "f": str() writes small and scaled values in exponent form ("1E-7", "0E-12"); "f"
        # writes every digit PostgreSQL sent, as it sent them ("0.0000001", "0.000000000000")
        return format(value, "f")
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def as_json(rows: list[dict[str, Any]]) -> str:
    """JSON with decimals as exact strings."""
    return json.dumps(rows, default=_json_default, indent=2)
