"""trading.trade_summary (GET /api/v1/historical/trades/summary): what counts as a closing and a
winning trade."""

from __future__ import annotations

from trading_helpers import list_binance_eth_btc, trade


def summary(conn) -> dict:
    [group] = conn.execute("select trading.trade_summary(strategy => 'alpha') -> 'groups'").fetchone()[0]
    return {key: group[key] for key in ("trades", "closing_trades", "winning_trades", "win_rate")}


def test_a_close_at_the_entry_price_is_a_closing_trade_that_did_not_win(seeded):
    trade(seeded, "buy", "1", "100", fee="0.1")
    trade(seeded, "sell", "1", "100", fee="0.1")

    assert summary(seeded) == {"trades": 2, "closing_trades": 1, "winning_trades": 0, "win_rate": "0"}


def test_the_win_rate_counts_break_even_closes_among_the_closing_trades(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "1", "110", fee="0.1")
    trade(seeded, "sell", "1", "100", fee="0.1")

    assert summary(seeded) == {"trades": 3, "closing_trades": 2, "winning_trades": 1, "win_rate": "0.5"}


def test_trades_in_two_quote_assets_are_summed_in_a_group_for_each(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "1", "0.05", symbol="ETHBTC")
    trade(seeded, "sell", "1", "0.06", symbol="ETHBTC")  # +0.01 BTC
    trade(seeded, "buy", "0.01", "60000")
    trade(seeded, "sell", "0.01", "59000")  # -10 USDT

    groups = seeded.execute("select trading.trade_summary(strategy => 'alpha') -> 'groups'").fetchone()[0]

    assert [(g["key"], g["quote_asset"], g["notional"], g["realized_pnl"]) for g in groups] == [
        ("alpha", "BTC", "0.11", "0.01"),
        ("alpha", "USDT", "1190", "-10"),
    ]
