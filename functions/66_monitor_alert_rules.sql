-- spreadedge functions: alert rules
-- monitor.add_alert_rule validates a rule completely when it is added, so evaluation never meets a
-- broken one; internal.alert_rule_values computes every enabled rule's aggregate in one query.

create or replace function internal.rule_problem(p_what text, p_value text, p_allowed text)
    returns void
    immutable
    language plpgsql
as $$
-- Raise invalid_alert_rule (22S12) naming what is wrong, the value given and what is allowed.
begin
    raise exception '% must be %, got "%"', p_what, p_allowed, left(coalesce(p_value, 'null'), 80)
        using errcode = '22S12';
end;
$$;
comment on function internal.rule_problem(text, text, text) is
    'Raises 22S12 invalid_alert_rule naming the part of the rule, the value given and what is allowed.';

create or replace function internal.check_collected_labels(p_metric text, p_labels jsonb)
    returns void
    stable
    language plpgsql
as $$
-- A rule on a collected metric may give only labels its series carry, with values they have:
-- 22S12 otherwise, 23S03 for a strategy the session does not see. A rule on an amount (unit quote
-- in monitor.metric_catalog) must name its quote_asset, one on trades.volume its base_asset, and
-- one on the trades of a period (trades.count, .volume, .notional) its period (22S12).
-- why: any other label, or a value no series has (a misspelt strategy), would match nothing and
-- the rule would never fire; without quote_asset a rule would add up the series of every
-- quote asset, BTC and USDT at par; and without period it would add up the hour's series and
-- the day's, which holds the same hour's trades again (3 fills this hour read as 6)
declare
    v_labels       text[];
    v_label_values text[];
    v_key          text;
    v_value        jsonb;
begin
    v_labels := array(select c.label from internal.collected_metric_label(p_metric) c);
    for v_key, v_value in select l.key, l.value from jsonb_each(p_labels) l loop
        if not v_key = any (v_labels) then
            perform internal.rule_problem(format('a label of %s', p_metric), v_key,
                                          case cardinality(v_labels)
                                              when 0 then 'absent ({}: its series have no labels)'
                                              when 1 then v_labels[1] || ' (its only label)'
                                              else 'one of ' || array_to_string(v_labels, ', ') end);
        end if;
        select c.label_values into v_label_values
        from internal.collected_metric_label(p_metric) c
        where c.label = v_key;
        if jsonb_typeof(v_value) <> 'string'
           or not (v_label_values is null or v_value #>> '{}' = any (v_label_values)) then
            perform internal.rule_problem(format('the %s label of %s', v_key, p_metric), v_value #>> '{}',
                                          coalesce('one of ' || array_to_string(v_label_values, ', '),
                                                   'a strategy name (a string)'));
        end if;
        if v_label_values is null then
            perform internal.find_strategy(v_value #>> '{}');
        end if;
    end loop;
    if 'quote_asset' = any (v_labels) and not p_labels ? 'quote_asset' then
        perform internal.rule_problem(format('the labels of %s', p_metric), p_labels::text,
                                      'an object naming its quote_asset (amounts in different quote assets do not add up)');
    end if;
    if 'base_asset' = any (v_labels) and not p_labels ? 'base_asset' then
        perform internal.rule_problem(format('the labels of %s', p_metric), p_labels::text,
                                      'an object naming its base_asset (quantities of different assets do not add up)');
    end if;
    if 'period' = any (v_labels) and not p_labels ? 'period' then
        perform internal.rule_problem(format('the labels of %s', p_metric), p_labels::text,
                                      'an object naming its period, hour or day (the day''s trades include the hour''s)');
    end if;
end;
$$;
comment on function internal.check_collected_labels(text, jsonb) is
    'Raises 22S12 for a label a collected metric''s series never carry (key or value), a rule on an amount without quote_asset, on trades.volume without base_asset or on trades without period, 23S03 for an unknown strategy label.';

create or replace function monitor.add_alert_rule(
    name              text,
    kind              text,
    operator          text,
    threshold         numeric,
    metric            text default null,
    exchange          text default null,
    symbol            text default null,
    aggregate         text default null,
    labels            jsonb default '{}',
    evaluation_window interval default '5 minutes',
    severity          text default 'warning',
    cooldown          interval default '15 minutes',
    channels          text[] default '{}',
    description       text default null
)
    returns integer
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Add an alert rule: aggregate(values over evaluation_window) operator threshold; aggregate
-- defaults to sum for volume rules, last for the others. price and volume
-- rules watch exchange/symbol's market data, risk, system and trading rules a metric of their
-- category (or a custom one). Labels pick a metric's series: price and volume rules take none, a
-- collected metric's rule only the label its series carry, with a value they have (a strategy
-- the session sees). A volume sum is of the ticks' quantity: base units, contracts for
-- derivatives. Everything is checked here: 22S12 for a malformed rule, 23S12 for an unknown
-- metric, 23S01/23S02 for an unknown instrument, 23S03 for an unknown strategy label, 23S15 when
-- the name is taken.
#variable_conflict use_column
declare
    v_aggregate     text := coalesce(add_alert_rule.aggregate, case add_alert_rule.kind when 'volume' then 'sum' else 'last' end);
    v_instrument_id integer;
    v_category      text;
    v_aggregates    text[];
    v_id            integer;
begin
    perform internal.require_permission('alerts:manage');
    if add_alert_rule.name is null or add_alert_rule.name !~ '^[a-z0-9][a-z0-9_.-]*$' or length(add_alert_rule.name) > 100 then
        perform internal.rule_problem('rule name', add_alert_rule.name, '1 to 100 of a-z, 0-9, _ . - (starting with a letter or digit)');
    end if;
    if add_alert_rule.kind is null or not add_alert_rule.kind = any (enum_range(null::monitor.alert_kind)::text[]) then
        perform internal.rule_problem('kind', add_alert_rule.kind, 'price, volume, risk, system or trading');
    end if;
    if add_alert_rule.kind in ('price', 'volume') then
        if add_alert_rule.metric is not null then
            perform internal.rule_problem(format('a %s rule''s metric', add_alert_rule.kind), add_alert_rule.metric,
                                          'null (it watches exchange and symbol)');
        end if;
        if add_alert_rule.exchange is null or add_alert_rule.symbol is null then
            perform internal.rule_problem(format('a %s rule''s exchange and symbol', add_alert_rule.kind),
                                          concat_ws('/', add_alert_rule.exchange, add_alert_rule.symbol), 'both given');
        end if;
        -- why: labels select a metric's series; market data has none, so they would be ignored
        -- (and a strategy label would change who sees the rule, see monitor.alert_rule_list)
        if add_alert_rule.labels is distinct from '{}'::jsonb then
            perform internal.rule_problem(format('a %s rule''s labels', add_alert_rule.kind),
                                          add_alert_rule.labels::text,
                                          '{} (it watches exchange and symbol, not a metric''s series)');
        end if;
        v_instrument_id := (internal.find_instrument(add_alert_rule.exchange, add_alert_rule.symbol)).instrument_id;
        v_aggregates := case add_alert_rule.kind when 'price' then array['last', 'avg', 'min', 'max', 'change_pct']
                                                 else array['sum', 'count'] end;
    else
        if add_alert_rule.exchange is not null or add_alert_rule.symbol is not null then
            perform internal.rule_problem(format('a %s rule''s exchange and symbol', add_alert_rule.kind),
                                          concat_ws('/', add_alert_rule.exchange, add_alert_rule.symbol),
                                          'null (it watches a metric)');
        end if;
        select c.category into v_category from monitor.metric_catalog c where c.name = add_alert_rule.metric;
        if v_category is null then
            raise exception 'metric "%" does not exist', coalesce(add_alert_rule.metric, 'null')
                using errcode = '23S12',
                      hint = 'monitor.metric_catalog lists the metrics; monitor.record_metric registers a custom one.';
        end if;
        if v_category not in (add_alert_rule.kind, 'custom') then
            perform internal.rule_problem(format('the metric of a %s rule', add_alert_rule.kind),
                                          format('%s (a %s metric)', add_alert_rule.metric, v_category),
                                          format('a %s or custom metric', add_alert_rule.kind));
        end if;
        v_aggregates := array['last', 'avg', 'min', 'max', 'sum', 'count', 'change_pct', 'increase'];
    end if;
    if not v_aggregate = any (v_aggregates) then
        perform internal.rule_problem(format('the aggregate of a %s rule', add_alert_rule.kind), v_aggregate,
                                      'one of ' || array_to_string(v_aggregates, ', '));
    end if;
    if add_alert_rule.operator is null or add_alert_rule.operator not in ('>', '>=', '<', '<=', '=', '<>') then
        perform internal.rule_problem('operator', add_alert_rule.operator, 'one of >, >=, <, <=, =, <>');
    end if;
    if add_alert_rule.threshold is null or not (add_alert_rule.threshold > '-Infinity' and add_alert_rule.threshold < 'Infinity') then
        perform internal.rule_problem('threshold', add_alert_rule.threshold::text, 'a finite number');
    end if;
    if add_alert_rule.labels is null or jsonb_typeof(add_alert_rule.labels) <> 'object' then
        perform internal.rule_problem('labels', add_alert_rule.labels::text, 'a JSON object');
    end if;
    if v_category <> 'custom' then
        perform internal.check_collected_labels(add_alert_rule.metric, add_alert_rule.labels);
    else
        perform internal.check_strategy_label(add_alert_rule.labels);
    end if;
    -- why no negative part: '1 mon -29 days' compared as 1 day, but subtracted from 15 March it
    -- ended on 16 March, after the time it was subtracted from: an empty window, a rule that never
    -- fired (and a cooldown written so never held)
    if add_alert_rule.evaluation_window is null or add_alert_rule.evaluation_window <= '0'
       or add_alert_rule.evaluation_window > '31 days'
       or internal.interval_has_negative_part(add_alert_rule.evaluation_window) then
        perform internal.rule_problem('evaluation window', add_alert_rule.evaluation_window::text,
                                      'more than 0 and at most 31 days, with no negative part');
    end if;
    if add_alert_rule.severity is null
       or not add_alert_rule.severity = any (enum_range(null::monitor.alert_severity)::text[]) then
        perform internal.rule_problem('severity', add_alert_rule.severity, 'info, warning or critical');
    end if;
    -- why at most a year: evaluation subtracts the cooldown from its time, and a cooldown that
    -- reaches before 4713 BC (10000 years) failed with "timestamp out of range" on every run, for
    -- every rule; 366 days, since interval comparison counts a year as 360 days
    if add_alert_rule.cooldown is null or add_alert_rule.cooldown < '0' or add_alert_rule.cooldown > '366 days'
       or internal.interval_has_negative_part(add_alert_rule.cooldown) then
        perform internal.rule_problem('cooldown', add_alert_rule.cooldown::text,
                                      'zero or more and at most 1 year (366 days), with no negative part');
    end if;
    -- why array_ndims: array_position raised a bare 0A000 on a two-dimensional array ({{email}});
    -- a null element is never contained (<@), so that check refuses nulls too
    if add_alert_rule.channels is null or array_ndims(add_alert_rule.channels) > 1
       or not add_alert_rule.channels <@ enum_range(null::monitor.notification_channel)::text[] then
        perform internal.rule_problem('channels', add_alert_rule.channels::text, 'a list of email, slack, discord, webhook');
    end if;

    insert into monitor.alert_rules
        (name, kind, metric, labels, instrument_id, aggregate, operator, threshold, evaluation_window,
         severity, cooldown, channels, description)
    values
        (add_alert_rule.name, add_alert_rule.kind::monitor.alert_kind, add_alert_rule.metric, add_alert_rule.labels,
         v_instrument_id, v_aggregate, add_alert_rule.operator, add_alert_rule.threshold,
         add_alert_rule.evaluation_window, add_alert_rule.severity::monitor.alert_severity, add_alert_rule.cooldown,
         (select coalesce(array_agg(distinct c::monitor.notification_channel), '{}')
          from unnest(add_alert_rule.channels) c),
         add_alert_rule.description)
    on conflict (name) do nothing
    returning rule_id into v_id;
    if v_id is null then
        raise exception 'alert rule "%" already exists', add_alert_rule.name
            using errcode = '23S15', hint = 'Choose another name.';
    end if;
    return v_id;
end;
$$;
comment on function monitor.add_alert_rule(text, text, text, numeric, text, text, text, text, jsonb, interval, text, interval, text[], text) is
    'Add an alert rule (kind price|volume on exchange/symbol, no labels; risk|system|trading on a metric, labels only those its series carry); refused at once when malformed (22S12, 23S12, 23S01, 23S02, 23S03, 23S15). Returns its id.';

create or replace function monitor.set_alert_rule_enabled(name text, enabled boolean)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Enable or disable a rule. A disabled rule is not evaluated, so disabling resolves its open
-- alert (firing or acknowledged) at once, as a 'resolved' transition with no value and the actor
-- (spreadedge.actor, else the session user), notified when its firing was
-- (internal.resolve_alert_of_disabled_rule); re-enabled, the rule starts afresh: the next
-- evaluation may open a new alert. Setting the state a rule already has changes and writes
-- nothing. Disabling waits for a running monitor.evaluate_alert_rules, and a run that starts
-- before the disabling transaction ends returns no rows (the next run evaluates). An alert the
-- disabling could not see (its REPEATABLE READ or SERIALIZABLE snapshot predates the run that
-- opened it) is resolved by the next evaluation, with this actor and time (the audit log's).
#variable_conflict use_column
declare
    v_rule monitor.alert_rules;
begin
    perform internal.require_permission('alerts:manage');
    -- why: a null must not decide for the caller whether a rule watches (it read as true)
    if set_alert_rule_enabled.enabled is null then
        raise exception 'enabled must be true or false, got null' using errcode = '22S09';
    end if;
    -- why the evaluation's lock, taken first: a run that had read the rule as enabled could open
    -- an alert after this resolved none (or resolve the alert this resolves, a second time), and
    -- nothing evaluates a disabled rule any more (monitor.evaluate_alert_rules only resolves, at
    -- its next run, an open alert of a disabled rule). Taken before the rule's row, which the run
    -- updates (last_notified_at): the other order could deadlock.
    if not set_alert_rule_enabled.enabled then
        perform pg_advisory_xact_lock(hashtext('spreadedge.evaluate_alert_rules'));
    end if;
    -- why the scope: a rule on another user's strategy, which monitor.alert_rule_list does not
    -- show the user, is unknown to them, not theirs to switch off
    select r.* into v_rule
    from monitor.alert_rules r
    where r.name = set_alert_rule_enabled.name
      and exists (select from monitor.alert_rule_list l where l.rule_id = r.rule_id)
    for update;
    if v_rule.rule_id is null then
        raise exception 'alert rule "%" does not exist', coalesce(set_alert_rule_enabled.name, 'null')
            using errcode = '23S13';
    end if;
    if v_rule.is_enabled = set_alert_rule_enabled.enabled then
        return;
    end if;
    update monitor.alert_rules r set is_enabled = set_alert_rule_enabled.enabled
    where r.rule_id = v_rule.rule_id;
    if not set_alert_rule_enabled.enabled then
        perform internal.resolve_alert_of_disabled_rule(
            v_rule, coalesce(nullif(current_setting('spreadedge.actor', true), ''), session_user::text));
    end if;
end;
$$;
comment on function monitor.set_alert_rule_enabled(text, boolean) is
    'Enable or disable an alert rule by name; disabling resolves its open alert at once (a resolved transition with a null value and the actor, notified when the firing was; one a REPEATABLE READ or SERIALIZABLE disabling did not see, at the next evaluation), and re-enabled the rule starts afresh; the state a rule already has changes nothing. Raises 23S13 unknown_alert_rule, 22S09 for a null enabled.';

create or replace function internal.compare(p_value numeric, p_operator text, p_threshold numeric)
    returns boolean
    immutable
    language sql
as $$
    -- p_value p_operator p_threshold; null when the value is null (no data: nothing changes).
    select case p_operator
        when '>' then p_value > p_threshold
        when '>=' then p_value >= p_threshold
        when '<' then p_value < p_threshold
        when '<=' then p_value <= p_threshold
        when '=' then p_value = p_threshold
        when '<>' then p_value <> p_threshold
    end
$$;
comment on function internal.compare(numeric, text, numeric) is 'Applies an alert rule''s operator; null for a null value.';

create or replace function internal.rule_average(
    p_sum       numeric,
    p_count     bigint,
    p_scale     integer,
    p_operator  text,
    p_threshold numeric
)
    returns numeric
    immutable
    language sql
as $$
    -- The average (p_sum / p_count) an avg rule reports and compares: rounded to 12 decimals, or
    -- to p_scale (the values' own scale) when finer; with as many more decimals as it takes when
    -- that rounding would compare with the threshold otherwise than the exact average does. Null
    -- over no values.
    -- why: the average of 0, 0 and 1 read 0.333333333333, so a rule avg > 0.3333333333333 (a
    -- threshold finer than the average's 12 decimals) stayed quiet while the average, a third,
    -- is above it (and avg < 0.6666666666667 stayed quiet on two thirds, which is below it; avg =
    -- 0.333333333333 fired on a third). p_sum op p_threshold x p_count
    -- decides exactly; the finer average has enough decimals for the difference from the
    -- threshold, at least 10^-(its or the values' scale) / p_count, to survive the rounding
    select case when p_count = 0 then null
                when internal.compare(p_sum, p_operator, p_threshold * p_count)
                     is not distinct from internal.compare(round(p_sum / p_count, greatest(12, p_scale)),
                                                           p_operator, p_threshold)
                then round(p_sum / p_count, greatest(12, p_scale))
                else round(round(p_sum, greatest(p_scale, scale(p_threshold)) + length(p_count::text) + 2)
                           / p_count,
                           greatest(p_scale, scale(p_threshold)) + length(p_count::text) + 1)
           end
$$;
comment on function internal.rule_average(numeric, bigint, integer, text, numeric) is
    'The average of an avg rule''s window: rounded to 12 decimals (or the values'' scale when finer), finer when that rounding would compare with the threshold otherwise than the exact average; null over no values.';

create or replace function internal.rule_change_pct(
    p_first     numeric,
    p_last      numeric,
    p_operator  text,
    p_threshold numeric
)
    returns numeric
    immutable
    language plpgsql
as $$
-- The change from p_first to p_last in percent, (last - first) / |first| x 100, that a change_pct
-- rule reports and compares: rounded to 6 decimals, with as many more as it takes when that
-- rounding would compare with the threshold otherwise than the exact change does. Null without
-- values or from a first of 0 (no percentage of nothing).
-- why: rounded to 6 decimals alone, a price that rose 4.9999995 % read 5.000000 and fired a rule
-- change_pct >= 5 (a rule > 33.3333333 stayed quiet on a third more, 33.333333 %), where an
-- average is never rounded across its threshold (internal.rule_average)
declare
    v_change numeric := (p_last - p_first) * 100;
    v_exact  boolean;
    v_value  numeric;
begin
    if p_first is null or p_last is null or p_first = 0 then
        return null;
    end if;
    -- exact: (last - first) x 100 op threshold x |first|, products of numerics, never rounded
    v_exact := internal.compare(v_change, p_operator, p_threshold * abs(p_first));
    -- why the loop ends: the change differs from the threshold by a fixed amount (or not at
    -- all, and the threshold's own scale gives it exactly), which enough decimals always keep
    for v_scale in 6 .. 16383 loop
        -- why the dividend to 2 more places: the quotient then has them too before the rounding
        v_value := round(round(v_change, greatest(scale(v_change), v_scale + 2)) / abs(p_first), v_scale);
        exit when internal.compare(v_value, p_operator, p_threshold) is not distinct from v_exact;
    end loop;
    return v_value;
end;
$$;
comment on function internal.rule_change_pct(numeric, numeric, text, numeric) is
    'The change in percent a change_pct rule reports: (last - first) / |first| x 100 rounded to 6 decimals, finer when that rounding would compare with the threshold otherwise than the exact change; null from a first of 0.';

create or replace function internal.alert_rule_values(p_at timestamptz, p_since timestamptz)
    returns table (rule_id integer, value numeric)
    stable
    language sql
as $$
    -- Every enabled rule's aggregate over (p_at - window, p_at]: metric values whose labels contain
    -- the rule's, or the instrument's ticks; a price rule's last is the instrument's newest price
    -- in the window: its newest quote's mid or its newest tick's price, whichever is newer (the
    -- quote at a tie). Null when there
    -- are no values (count and sum are 0 then). The window's days are counted in the
    -- session TimeZone: its one caller, monitor.evaluate_alert_rules, runs in UTC, so that a window
    -- is a span of UTC time (a '1 day' window across DST was 23 or 25 hours in a Berlin session).
    -- A metric's values may belong to several series (distinct labels: collect_metrics writes one
    -- per strategy, status, state...), and the rule's labels may match more than one. avg, min,
    -- max, sum and count take every matching value of the window. last is the total of the
    -- matching series now: the sum of each series' latest value in the window (one series: its
    -- latest value); change_pct compares that total with the sum of each series' first value in
    -- the window: (last - first) / |first|, in percent, so a loss that deepens is a fall; a first
    -- total of 0 gives no value (no percentage of nothing). A series with two values at one time counts the larger. So a rule
    -- without labels on exposure.gross watches the gross exposure of every strategy together; to
    -- watch one strategy, give its labels.
    -- why p_since: no rule reads before it (a window is at most 31 days, alert_rules' check, and
    -- evaluate_alert_rules gives p_at - 33 days: a month of 31 days and a DST hour over). Given as
    -- a value, it prunes the partitions of ticks, quotes and metrics when the statement is
    -- planned; the windows of the rules (a column) prune only as each rule is read, after the
    -- planner and the executor have opened every partition, five times over: a year of daily
    -- partitions kept (retention off) cost each minute's run 1,800 partition scans to plan and start
    -- why one query: a lateral index scan per rule (metrics by name and time, ticks by instrument
    -- and time) keeps 1,000 rules within milliseconds, with no per-rule statement
    select r.rule_id,
           case when r.kind = 'price' and r.aggregate = 'last' then lp.value
                when r.kind in ('price', 'volume') then t.value
                when r.aggregate in ('last', 'change_pct') then s.value
                when r.aggregate = 'increase' then c.value
                else m.value
           end
    from monitor.alert_rules r
    left join lateral (
        select case r.aggregate
                   -- why at least the ticks' own scale, finer near the threshold: see the
                   -- metrics' avg below
                   when 'avg' then internal.rule_average(sum(k.price), count(*), max(scale(k.price)),
                                                         r.operator, r.threshold)
                   when 'min' then min(k.price)
                   when 'max' then max(k.price)
                   -- why ties in exchange trade id order (the shorter id first), as last below: in
                   -- time order alone, ticks of one time gave change_pct any of their prices as
                   -- the last, which need not be the one a rule on last read
                   when 'change_pct' then internal.rule_change_pct(
                                              (array_agg(k.price order by k.traded_at,
                                                         octet_length(k.exchange_trade_id),
                                                         k.exchange_trade_id))[1],
                                              (array_agg(k.price order by k.traded_at desc,
                                                         octet_length(k.exchange_trade_id) desc,
                                                         k.exchange_trade_id desc))[1],
                                              r.operator, r.threshold)
                   when 'sum' then coalesce(sum(k.quantity), 0)
                   when 'count' then count(*)
               end as value
        from market.ticks k
        where r.kind in ('price', 'volume') and r.aggregate <> 'last'
          and k.instrument_id = r.instrument_id
          and k.traded_at > p_at - r.evaluation_window and k.traded_at <= p_at and k.traded_at > p_since
    ) t on true
    -- why the window's market data, not trading.mark_price: the mark is the newest price known,
    -- however old, and falls back to a fill; a quote three days old fired a rule with a 5-minute
    -- window, and a feed that stopped kept its alert open (or never let it fire) for good, where a
    -- rule without data in its window changes nothing. A run at a past time read today's price.
    -- why the newer of the two (internal.market_mark, as marks): a quote feed that stopped 50
    -- minutes into an hour's window beat a tick of a second ago. Ticks of one time in exchange
    -- trade id order, the shorter id first (as market.latest_prices)
    left join lateral (
        select internal.market_mark(q.bid, q.bid_size, q.ask, q.ask_size, q.quoted_at, k.price, k.traded_at) as value
        from (select 1) one
        left join lateral (
            -- why both sides: a side of size 0 is no price (internal.market_mark); the window's
            -- newest quote with both is the book to take the mid of
            select q.bid, q.bid_size, q.ask, q.ask_size, q.quoted_at
            from market.quotes q
            where q.instrument_id = r.instrument_id
              and q.quoted_at > p_at - r.evaluation_window and q.quoted_at <= p_at and q.quoted_at > p_since
              and q.bid_size > 0 and q.ask_size > 0
            order by q.quoted_at desc
            limit 1) q on true
        left join lateral (
            select k.price, k.traded_at
            from market.ticks k
            where k.instrument_id = r.instrument_id
              and k.traded_at > p_at - r.evaluation_window and k.traded_at <= p_at and k.traded_at > p_since
            order by k.traded_at desc, octet_length(k.exchange_trade_id) desc, k.exchange_trade_id desc
            limit 1) k on true
        where r.kind = 'price' and r.aggregate = 'last'
    ) lp on true
    left join lateral (
        select case r.aggregate
                   -- why at least the values' own scale: rounded to 12 decimals, the average of
                   -- one value 0.5000000000001 read 0.5, and a rule avg > 0.5 stayed quiet (or
                   -- avg = 0.5 fired) while last, min and max read the value itself; and finer
                   -- when the threshold is (internal.rule_average)
                   when 'avg' then internal.rule_average(sum(x.value), count(*), max(scale(x.value)),
                                                         r.operator, r.threshold)
                   when 'min' then min(x.value)
                   when 'max' then max(x.value)
                   -- why 0 over no values, as count and a volume sum: a sum rule on an event
                   -- metric (app.errors recorded 1 per error) read null once the errors stopped,
                   -- so its alert never resolved and the next burst was never notified
                   when 'sum' then coalesce(sum(x.value), 0)
                   when 'count' then count(*)
               end as value
        from monitor.metrics x
        where r.metric is not null and r.aggregate not in ('last', 'change_pct', 'increase')
          and x.name = r.metric and x.labels @> r.labels
          and x.recorded_at > p_at - r.evaluation_window and x.recorded_at <= p_at and x.recorded_at > p_since
    ) m on true
    left join lateral (
        select case r.aggregate
                   when 'last' then sum(l.last_value)
                   -- why abs: from a negative first value (a loss) the sign must still say which
                   -- way the value went: -100 to -200 is -100 %, not +100 %
                   when 'change_pct' then internal.rule_change_pct(sum(l.first_value), sum(l.last_value),
                                                                   r.operator, r.threshold)
               end as value
        from (select (array_agg(x.value order by x.recorded_at desc, x.value desc))[1] as last_value,
                     (array_agg(x.value order by x.recorded_at, x.value desc)
                          filter (where r.aggregate = 'change_pct'))[1] as first_value
              from monitor.metrics x
              where r.metric is not null and r.aggregate in ('last', 'change_pct')
                and x.name = r.metric and x.labels @> r.labels
                and x.recorded_at > p_at - r.evaluation_window and x.recorded_at <= p_at and x.recorded_at > p_since
              group by x.labels) l
    ) s on true
    -- increase: how much a counter rose in the window (db.rollbacks: how many rolled back), the
    -- sum of each series' rises from its value before the window (its latest at or before the
    -- window's start, looked for at most one more window back) through each of its values in the
    -- window (a time recorded twice counts its larger value, as last does), a fall counted as a
    -- restart of the counter from 0, so its new value is the rise since (a crash, a restore or
    -- pg_stat_reset() starts db.commits again)
    -- why from the value before the window: collected each minute, a 5-minute window holds five
    -- values and four rises, so it counted four minutes (three when the minute's collection had
    -- not committed yet), a window of a minute counted nothing, and a rise between two windows
    -- counted in neither; from the value before it, each rise counts in the window it ends in
    -- why not sum or change_pct: sum adds up the running totals, and change_pct compares the
    -- window's rise with a total that grew for weeks (and reads -100 % after a crash)
    -- why 0 when nothing rose (no value in the window, or none before it to rise from), as sum and
    -- count over none: a rule on a burst of rollbacks resolves once they stop
    left join lateral (
        select coalesce(sum(case when v.previous is null then 0
                                 when v.value >= v.previous then v.value - v.previous
                                 else greatest(v.value, 0) end), 0) as value
        from (select t.recorded_at, t.value,
                     lag(t.value) over (partition by t.labels order by t.recorded_at) as previous
              from (select x.labels, x.recorded_at, max(x.value) as value
                    from monitor.metrics x
                    where r.metric is not null and r.aggregate = 'increase'
                      and x.name = r.metric and x.labels @> r.labels
                      and x.recorded_at > p_at - 2 * r.evaluation_window and x.recorded_at <= p_at
                      and x.recorded_at > p_since
                    group by x.labels, x.recorded_at) t) v
        where v.recorded_at > p_at - r.evaluation_window
    ) c on true
    where r.is_enabled
$$;
comment on function internal.alert_rule_values(timestamptz, timestamptz) is
    'Each enabled alert rule''s aggregate over (time - window, time], nothing read before since (no window reaches before time - 33 days; given as a value, it prunes partitions when planned) (avg rounded to 12 decimals, or to the values'' own scale when finer, and finer still when that rounding would compare with the threshold otherwise than the exact average), the window counted in the session TimeZone (monitor.evaluate_alert_rules runs in UTC) (null: no data, or change_pct from 0; count and sum are 0 over no data); a price rule''s last is the newest quote mid or tick price in the window, whichever is newer; change_pct is (last - first) / |first| in percent (internal.rule_change_pct: rounded to 6 decimals, finer when that rounding would compare with the threshold otherwise than the exact change; ticks of one time in trade id order, as last); last and change_pct of a metric with several matching series sum each series'' latest (and first) value; increase sums each series'' rises from its value before the window (the latest at or before its start, at most one more window back) through its values in the window, a fall counted as a restart of the counter from 0 (0 when nothing rose).';

create or replace function internal.alert_rule_values(p_at timestamptz)
    returns table (rule_id integer, value numeric)
    stable
    language sql
as $$
    -- internal.alert_rule_values(p_at, p_since) with the earliest time any rule's window reaches
    select * from internal.alert_rule_values(p_at, p_at - interval '33 days')
$$;
comment on function internal.alert_rule_values(timestamptz) is
    'Each enabled alert rule''s aggregate over (time - window, time]: internal.alert_rule_values(time, time - 33 days).';
