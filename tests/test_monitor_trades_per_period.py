"""monitor.trades_per_period: its amounts never add two quote assets together."""

from decimal import Decimal as D

from trading_helpers import list_binance_eth_btc, trade


# bug: the view summed the notional and fees of every instrument of an hour or day into one
# number, 100 USDT + 0.05 BTC read as 100.05 (and 1 BTC + 1 ETH as a volume of 2)
def test_trades_per_period_keeps_each_quote_asset_apart(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "1", "100", fee=D("0.1"))
    trade(seeded, "buy", "1", "0.05", symbol="ETHBTC", fee=D("0.00005"))
    got = seeded.execute(
        "select period, quote_asset, trades, notional, fees from monitor.trades_per_period"
        " order by period, quote_asset"
    ).fetchall()
    assert got == [
        ("day", "BTC", 1, D("0.05"), D("0.00005")),
        ("day", "USDT", 1, D("100"), D("0.1")),
        ("hour", "BTC", 1, D("0.05"), D("0.00005")),
        ("hour", "USDT", 1, D("100"), D("0.1")),
    ]
