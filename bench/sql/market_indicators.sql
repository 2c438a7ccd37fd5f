-- spreadedge bench: every indicator over one month of 1m candles of one instrument.
-- Parameters: %(instrument_id)s, %(since)s, %(until)s.
select count(*), count(rsi), count(macd_signal)
from internal.indicator_series(%(instrument_id)s, '1m', %(since)s, %(until)s);
