"""The independent computation of the indicators the tests check SQL against: textbook
definitions, one indicator at a time, in decimal arithmetic (callers set the precision)."""

import itertools
from decimal import Decimal


def sma(closes, n):
    return [None if i + 1 < n else sum(closes[i + 1 - n : i + 1]) / n for i in range(len(closes))]


def ema(values, n):
    out, current = [], None
    for i, value in enumerate(values):
        if i + 1 == n:
            current = sum(values[:n]) / n
        elif i + 1 > n:
            current = value * 2 / (n + 1) + current * (1 - Decimal(2) / (n + 1))
        out.append(current)
    return out


def macd(closes, fast=12, slow=26, signal=9):
    line = [None if s is None else f - s for f, s in zip(ema(closes, fast), ema(closes, slow), strict=True)]
    defined = [v for v in line if v is not None]
    sig = [None] * (len(line) - len(defined)) + ema(defined, signal)
    hist = [None if s is None else m - s for m, s in zip(line, sig, strict=True)]
    return line, sig, hist


def rsi(closes, n=14):
    out = [None] * len(closes)
    gains = [max(b - a, 0) for a, b in itertools.pairwise(closes)]
    losses = [max(a - b, 0) for a, b in itertools.pairwise(closes)]
    avg_gain, avg_loss = sum(gains[:n]) / n, sum(losses[:n]) / n
    for i in range(n, len(closes)):
        if i > n:
            avg_gain = (avg_gain * (n - 1) + gains[i - 1]) / n
            avg_loss = (avg_loss * (n - 1) + losses[i - 1]) / n
        out[i] = Decimal(100) if avg_loss == 0 else 100 - 100 / (1 + avg_gain / avg_loss)
    return out


def bollinger(closes, n=20, k=2):
    bands = []
    for i in range(len(closes)):
        if i + 1 < n:
            bands.append((None, None, None))
            continue
        window = closes[i + 1 - n : i + 1]
        mean = sum(window) / n
        sd = (sum((c - mean) ** 2 for c in window) / n).sqrt()
        bands.append((mean, mean + k * sd, mean - k * sd))
    return bands


def vwap(rows):
    out, day, value, volume = [], None, Decimal(0), Decimal(0)
    for open_time, *_, vol, quote_vol in rows:
        if open_time.date() != day:
            day, value, volume = open_time.date(), Decimal(0), Decimal(0)
        value, volume = value + quote_vol, volume + vol
        out.append(value / volume if volume else None)
    return out


def atr(rows, n=14):
    out, current, trs = [], None, []
    for i, (_, _, high, low, _close, _, _) in enumerate(rows):
        previous = rows[i - 1][4] if i else None
        tr = high - low if previous is None else max(high - low, abs(high - previous), abs(low - previous))
        trs.append(tr)
        if i + 1 == n:
            current = sum(trs) / n
        elif i + 1 > n:
            current = (current * (n - 1) + tr) / n
        out.append(current)
    return out
