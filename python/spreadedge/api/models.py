"""The history API's response shapes, for the OpenAPI document.

The JSON itself is built in SQL (``functions/5[5-8]_trading_history*.sql``) and
passed through unparsed; these models only describe it, so a client (and the schemathesis run in the
tests) can check every response against ``/openapi.json``. Decimals are strings, times ISO 8601 UTC.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DecimalText = str  # an exact decimal as a JSON string, e.g. "66523.4"
# The values of the SQL enums and choices (tests/test_api_schema.py keeps them equal to the database's).
OrderStatus = Literal["new", "open", "partially_filled", "filled", "cancelled", "rejected", "expired"]
OrderType = Literal["market", "limit", "stop_market", "stop_limit"]
ExchangeFillKind = Literal["liquidation", "adl", "settlement", "delisting"]
Side = Literal["buy", "sell"]
GroupBy = Literal["strategy", "exchange", "symbol", "day"]
PositionStatus = Literal["open", "closed"]
Time = str  # ISO 8601 in UTC, e.g. "2026-01-02T03:04:05.000006Z"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Order(Model):
    order_id: int
    created_at: Time
    strategy: str
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: DecimalText
    price: DecimalText | None
    stop_price: DecimalText | None
    status: OrderStatus
    filled_quantity: DecimalText
    avg_fill_price: DecimalText | None
    client_order_id: str | None
    exchange_order_id: str | None
    status_reason: str | None
    updated_at: Time
    exchange_initiated: ExchangeFillKind | None = Field(
        description="Why the exchange made this order's fill itself (trading.record_exchange_fill); "
        "null for an order the strategy placed."
    )


class OrderEvent(Model):
    occurred_at: Time
    from_status: str | None
    to_status: str
    trade_id: int | None
    reason: str | None


class Trade(Model):
    trade_id: int
    executed_at: Time
    order_id: int
    strategy: str
    exchange: str
    symbol: str
    side: Side
    quantity: DecimalText
    price: DecimalText
    fee: DecimalText
    fee_currency: str
    fee_quote: DecimalText
    realized_pnl_gross: DecimalText
    realized_pnl: DecimalText
    exchange_trade_id: str
    is_late: bool
    recorded_at: Time


class OrderDetail(Model):
    order: Order
    events: list[OrderEvent] = Field(description="Status changes, oldest first.")
    trades: list[Trade] = Field(description="Fills, oldest first.")


class OrderPage(Model):
    items: list[Order]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")


class TradePage(Model):
    items: list[Trade]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")


class Position(Model):
    strategy: str
    exchange: str
    symbol: str
    market_type: str
    quote_asset: str = Field(
        description="The asset avg_entry_price, mark_price and the PnL, fees and funding are in: the"
        " instrument's quote asset (BTC for ETH/BTC)."
    )
    status: PositionStatus
    quantity: DecimalText
    avg_entry_price: DecimalText | None
    mark_price: DecimalText | None
    unrealized_pnl: DecimalText | None
    realized_pnl_gross: DecimalText
    fees_paid: DecimalText
    funding: DecimalText
    realized_pnl: DecimalText
    trade_count: int
    opened_at: Time | None
    updated_at: Time


class PositionList(Model):
    items: list[Position]


class TradeSummaryGroup(Model):
    key: str = Field(
        description="The strategy, exchange, symbol (its trades on every exchange) or UTC day (YYYY-MM-DD)"
        " of the group."
    )
    quote_asset: str = Field(
        description="The quote asset notional, fees and realized PnL are in: a key with trades in several"
        " quote assets has a group for each."
    )
    trades: int
    volume: DecimalText
    notional: DecimalText
    fees: DecimalText
    realized_pnl: DecimalText
    closing_trades: int = Field(
        description="Trades that closed (part of) a position, a close at the entry price included."
    )
    winning_trades: int = Field(description="Closing trades with a positive realized PnL net of fees.")
    win_rate: DecimalText | None = Field(
        description="winning_trades / closing_trades; null when none closed."
    )


class TradeSummary(Model):
    group_by: GroupBy
    start_date: Time | None
    end_date: Time | None
    groups: list[TradeSummaryGroup]


class Snapshot(Model):
    snapshot_id: int
    taken_at: Time
    strategy: str | None = Field(description="null for the total row.")
    capital: DecimalText
    realized_pnl: DecimalText
    unrealized_pnl: DecimalText
    equity: DecimalText
    gross_exposure: DecimalText
    net_exposure: DecimalText
    open_positions: int
    valuation_asset: str | None = Field(
        description="The asset capital, PnL and exposure are in (positions quoted in another are converted);"
        " null for a snapshot taken before migration 0031, which added quote assets up at par."
    )


class SnapshotPage(Model):
    items: list[Snapshot]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")


class LatestPortfolio(Model):
    taken_at: Time | None
    total: Snapshot | None
    strategies: list[Snapshot]


class HealthCheck(Model):
    name: str
    ok: bool
    detail: str


class PoolStats(Model):
    size: int
    available: int
    waiting: int
    max_size: int


class Health(Model):
    status: Literal["healthy", "unhealthy"]
    checks: list[HealthCheck]
    pool: PoolStats


class LoginRequest(Model):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)
    totp_code: str | None = Field(default=None, max_length=20)


class LoginResponse(Model):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    user_id: int
    expires_at: Time


class Problem(Model):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    parameter: str | None = Field(default=None, description="The request parameter at fault, when one is.")
    sqlstate: str | None = Field(
        default=None, description="The project SQLSTATE behind the error, when one is."
    )
