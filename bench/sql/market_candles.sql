-- spreadedge bench: one month of 1m candles for one instrument (a random walk), up to the last
-- whole minute. Parameters: %(instrument_id)s, %(until)s.
insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume, quote_volume,
                            trade_count)
select %(instrument_id)s, '1m', w.open_time, w.open, greatest(w.open, w.close) + 1.5, least(w.open, w.close) - 1.5,
       w.close, 2.5, 2.5 * w.close, 40
from (
    select open_time,
           round(67000 + coalesce(lag(walk) over (order by open_time), 0), 2) as open,
           round(67000 + walk, 2) as close
    from (
        select open_time, sum(step) over (order by open_time) as walk
        from (
            select %(until)s::timestamptz - interval '1 minute' * g as open_time, ((random() - 0.5) * 20)::numeric as step
            from generate_series(1, 43200) g
        ) steps
    ) walked
) w
on conflict do nothing;
