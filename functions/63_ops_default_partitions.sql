-- spreadedge functions: default partitions refuse rows
-- A row whose time falls outside every partition would land in its table's default partition,
-- where health flags it but nothing stops it: a fill dated 2010 or a quote file from last year
-- was stored silently in the wrong place. A BEFORE INSERT row trigger on each default partition
-- refuses such a row with 22S09 naming the table and the time. It fires only for rows routed to
-- the default partition, so rows with a partition pay nothing. audit.log is left out on purpose:
-- its rows are stamped now() by the audit triggers, never by a caller, and refusing them would
-- stop every write when partition maintenance lapses (health reports that case).
-- session_replication_role = replica (ops.repair_default_partitions, tests planting a row) skips it.

create or replace function internal.refuse_default_partition_row()
    returns trigger
    stable
    set search_path = ''
    language plpgsql
as $$
-- Raises invalid_argument for the row being inserted into a default partition; TG_ARGV[0] names
-- the parent table, TG_ARGV[1] its time column.
begin
    raise exception using
        errcode = '22S09',
        message = format('%s has no partition for %s %s', tg_argv[0], tg_argv[1], to_jsonb(new) ->> tg_argv[1]),
        hint = 'The time is outside the partitions kept (spreadedge partitions status); check the time, '
               'or create its partition first (spreadedge partitions maintain, partman.create_partition_time).';
end;
$$;
comment on function internal.refuse_default_partition_row() is
    'Trigger on default partitions: refuses a row with no partition for its time (22S09), so nothing lands there silently.';

create or replace trigger _100_refuse_row
    before insert on trading.orders_default
    for each row execute function internal.refuse_default_partition_row('trading.orders', 'created_at');
create or replace trigger _100_refuse_row
    before insert on trading.order_events_default
    for each row execute function internal.refuse_default_partition_row('trading.order_events', 'occurred_at');
create or replace trigger _100_refuse_row
    before insert on trading.trades_default
    for each row execute function internal.refuse_default_partition_row('trading.trades', 'executed_at');
create or replace trigger _100_refuse_row
    before insert on market.quotes_default
    for each row execute function internal.refuse_default_partition_row('market.quotes', 'quoted_at');
create or replace trigger _100_refuse_row
    before insert on market.ticks_default
    for each row execute function internal.refuse_default_partition_row('market.ticks', 'traded_at');
create or replace trigger _100_refuse_row
    before insert on market.candles_default
    for each row execute function internal.refuse_default_partition_row('market.candles', 'open_time');
create or replace trigger _100_refuse_row
    before insert on market.technical_indicators_default
    for each row execute function internal.refuse_default_partition_row('market.technical_indicators', 'open_time');
create or replace trigger _100_refuse_row
    before insert on monitor.metrics_default
    for each row execute function internal.refuse_default_partition_row('monitor.metrics', 'recorded_at');
