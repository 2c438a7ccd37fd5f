-- spreadedge functions: audit
-- The statement-level trigger function that writes audit.log from transition tables, the trigger
-- that keeps the log append-only, and audit.history.

create or replace function audit.row_key(p_row jsonb, p_key1 text, p_key2 text)
    returns text
    -- why stable, not immutable: jsonb_build_object is stable, and a SQL function declared more
    -- immutable than its body is never inlined into the trigger's INSERT
    stable
    language sql
as $$
    -- The key columns of a row as the text of one jsonb object, e.g. {"order_id": 42}: jsonb sorts
    -- the keys, so the text is canonical and audit.history can compare it with a key given in any
    -- order. p_key2 is null for a one-column key; a p_key2 with a leading minus is a column left out
    -- of the images (audit.log_changes passes its second argument as it is), not a key.
    select case when p_key2 is null or left(p_key2, 1) = '-' then jsonb_build_object(p_key1, p_row -> p_key1)
                else jsonb_build_object(p_key1, p_row -> p_key1, p_key2, p_row -> p_key2)
           end::text
$$;
comment on function audit.row_key(jsonb, text, text) is
    'The key columns (one or two) of a row''s json as canonical json text, e.g. {"order_id": 42}.';

create or replace function audit.log_changes()
    returns trigger
    volatile
    language plpgsql
as $$
-- Statement-level AFTER trigger (one per INSERT, UPDATE and DELETE, each with its transition
-- tables): writes one audit.log row per changed row. Trigger arguments name the row's key columns
-- (one or two), then any columns to leave out of the logged rows, each written with a leading minus
-- ('-password_hash'): secrets and their hashes never reach the audit log.
-- The project's own tables use a copy of this function each, with their arguments written in
-- (90_audit_triggers.sql.j2); this one serves any other table and is what those copies must match.
-- why so little PL/pgSQL: three audit statements run in every fill (trade, order, position), and each
-- PL/pgSQL expression is set up again in every transaction, which costs more than evaluating the
-- same thing inside the INSERT. Arguments that are only key columns (the usual case) take one
-- test; the others are checked, and their columns to leave out listed, only then.
-- why "offset 0": without it the subquery is flattened and to_jsonb runs once for the key and
-- once for the image of every inserted or deleted row
declare
    v_redact text[];  -- null unless the arguments list columns to leave out
begin
    if tg_nargs not in (1, 2) or left(tg_argv[0], 1) = '-' or left(tg_argv[tg_nargs - 1], 1) = '-' then
        -- why every argument from the third on: a key has at most two columns, so each later
        -- argument is a column to leave out; one without its minus ('id', '-token', 'pin') was
        -- neither key nor left out, and 'pin' reached the log
        if tg_nargs = 0 or left(tg_argv[0], 1) = '-'
           or exists (select from unnest(tg_argv[2:]) a where left(a, 1) <> '-') then
            raise exception 'audit.log_changes on %.% needs one or two key column names, then -columns to leave out',
                quote_ident(tg_table_schema), quote_ident(tg_table_name);
        end if;
        v_redact := array(select substr(a, 2) from unnest(tg_argv) a where left(a, 1) = '-');
    end if;
    if tg_op = 'INSERT' then
        insert into audit.log (table_name, operation, row_key, new_row)
        select format('%I.%I', tg_table_schema, tg_table_name), 'INSERT', audit.row_key(n.j, tg_argv[0], tg_argv[1]), n.j
        from (select to_jsonb(r) - coalesce(v_redact, '{}') as j from new_rows r offset 0) n;
    elsif tg_op = 'UPDATE' then
        -- why pair by position: PostgreSQL appends each updated row's old and new versions to the
        -- two transition tables together, so the n-th old row and the n-th new row are one row
        -- (also when its key or partition changes); unnest zips the two in that order, where a join
        -- on the key would cost a hash join per statement and lose rows whose key changed
        insert into audit.log (table_name, operation, row_key, old_row, new_row)
        select format('%I.%I', tg_table_schema, tg_table_name), 'UPDATE', audit.row_key(z.new_row, tg_argv[0], tg_argv[1]),
               z.old_row, z.new_row
        from unnest(array(select to_jsonb(r) - coalesce(v_redact, '{}') from old_rows r),
                    array(select to_jsonb(r) - coalesce(v_redact, '{}') from new_rows r)) as z (old_row, new_row);
    else
        insert into audit.log (table_name, operation, row_key, old_row)
        select format('%I.%I', tg_table_schema, tg_table_name), 'DELETE', audit.row_key(o.j, tg_argv[0], tg_argv[1]), o.j
        from (select to_jsonb(r) - coalesce(v_redact, '{}') as j from old_rows r offset 0) o;
    end if;
    return null;
end;
$$;
comment on function audit.log_changes() is
    'Statement-level trigger writing audit.log rows from transition tables; arguments: one or two key columns, then -columns to leave out.';

create or replace function audit.log_truncate()
    returns trigger
    volatile
    language plpgsql
as $$
-- BEFORE TRUNCATE statement trigger of audited tables, with audit.log_changes's arguments: a
-- TRUNCATE deletes every row and fires no DELETE trigger, so it first writes one DELETE row per
-- row, the image audit.log_changes would write for a DELETE of it. Without it a TRUNCATE (or one
-- cascaded to the table) left no trace in the log, and ops.check_invariants reported every row.
-- (A TRUNCATE naming one partition of a partitioned table fires no trigger of its parent.)
begin
    -- why from the third on: as in audit.log_changes, a later argument without its minus is refused
    if tg_nargs = 0 or left(tg_argv[0], 1) = '-'
       or exists (select from unnest(tg_argv[2:]) a where left(a, 1) <> '-') then
        raise exception 'audit.log_truncate on %.% needs one or two key column names, then -columns to leave out',
            quote_ident(tg_table_schema), quote_ident(tg_table_name);
    end if;
    execute format(
        'insert into audit.log (table_name, operation, row_key, old_row)
         select %1$L, ''DELETE'', audit.row_key(x.image, %2$L, %3$L), x.image
         from (select to_jsonb(t) - %4$L::text[] as image from %5$I.%6$I t offset 0) x',
        format('%I.%I', tg_table_schema, tg_table_name), tg_argv[0], tg_argv[1],
        array(select substr(a, 2) from unnest(tg_argv) a where left(a, 1) = '-'),
        tg_table_schema, tg_table_name);
    return null;
end;
$$;
comment on function audit.log_truncate() is
    'BEFORE TRUNCATE trigger of audited tables: writes a DELETE audit.log row for every row about to go; arguments as audit.log_changes.';

create or replace function audit.refuse_change()
    returns trigger
    volatile
    language plpgsql
as $$
-- BEFORE UPDATE/DELETE/TRUNCATE statement trigger of append-only tables, and BEFORE UPDATE/DELETE
-- row trigger of their partitions.
begin
    raise exception '%.% is append-only: % is not allowed', tg_table_schema, tg_table_name, tg_op
        using errcode = '55S02',
              hint = 'Rows of this table are immutable facts; they leave only when their partition passes the retention period.';
end;
$$;
comment on function audit.refuse_change() is 'Refuses UPDATE, DELETE and TRUNCATE on append-only tables (55S02).';

-- why the drop: audit.history took the table as regclass, which the auditor could not resolve for a
-- table in a schema it has no USAGE on (every trading table); the old signature must not linger as
-- an overload (a quoted name literal would then be ambiguous, and its grant would not be unique)
drop function if exists audit.history(regclass, jsonb);

create or replace function audit.history(table_name text, key jsonb)
    returns table (
        audit_id  bigint,
        logged_at timestamptz,
        operation text,
        old_row   jsonb,
        new_row   jsonb,
        actor     text,
        db_role   text,
        txid      bigint
    )
    stable
    language plpgsql
as $$
-- One row's story, oldest first: audit.history('trading.orders', '{"order_id": 42}'), with the rows
-- logged under its earlier keys when an UPDATE changed its key.
-- why text, not regclass: audit.log keeps the table by name (schema.table, as format('%I.%I')
-- writes it), so the name is matched against the log and the table is never looked up: the auditor
-- needs no USAGE on its schema, and the story of a table since dropped or renamed is still told
-- under the name it had. The name is read as regclass would read it (unquoted parts folded to lower
-- case, quoted ones kept); a name without a schema is looked up on the search_path. A session
-- scoped to a user needs audit:read (admin, auditor): 42S01 otherwise.
declare
    v_parts  text[];
    v_table  text;
    v_logged jsonb;  -- one key of this table as the log holds it, to check the key given against
    v_key    text;   -- the key given, its numbers without trailing fractional zeros (42.0 is 42)
    -- the segments of the story: under row_key, audit ids in [from, to) (null: unbounded)
    v_seg_keys text[];
    v_seg_from bigint[];
    v_seg_to   bigint[];
    v_moves    bigint[];
    v_pending  bigint[];  -- key-changing UPDATEs whose earlier key is still to be read
    v_move     bigint;
    v_old      jsonb;
    v_from     bigint;
    v_entered_by_move boolean;
begin
    -- why: the log holds every user's rows (orders, trades, API key metadata); a session scoped
    -- to a trader must not read another trader's story through it
    perform internal.require_permission('audit:read');
    begin
        v_parts := parse_ident(history.table_name);
    exception when invalid_parameter_value then
        v_parts := '{}';  -- not a name: refused below
    end;
    if cardinality(v_parts) = 2 then
        v_table := format('%I.%I', v_parts[1], v_parts[2]);
    elsif cardinality(v_parts) = 1 then
        select format('%I.%I', n.nspname, c.relname) into v_table
        from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where c.oid = to_regclass(quote_ident(v_parts[1]));
    end if;
    if v_table is null and history.table_name is not null then
        raise exception 'table_name % is neither schema.table nor a table on the search_path',
            quote_literal(history.table_name)
            using errcode = '22S09',
                  hint = 'Name the table with its schema, as audit.log.table_name does, e.g. ''trading.orders''.';
    end if;
    if jsonb_typeof(history.key) is distinct from 'object' and history.key is not null then
        raise exception 'key % is not a json object of the row''s key columns', history.key
            using errcode = '22S09',
                  hint = 'Give the key as audit.log.row_key holds it, e.g. ''{"order_id": 42}''.';
    end if;
    -- why both spellings: jsonb keeps a number's scale, so {"order_id": 42.0} is not the text of
    -- the logged {"order_id": 42} and found nothing; the key as given still finds a key column
    -- whose values keep their scale (a numeric(10,2) logs 42.50)
    v_key := (select jsonb_object_agg(e.key, case when jsonb_typeof(e.value) = 'number'
                                                  then to_jsonb(trim_scale(e.value::numeric)) else e.value end)
              from jsonb_each(history.key) e)::text;
    -- why the story under earlier keys: an UPDATE of a key column is logged under the new key only,
    -- its old_row holding the old key; the rows before it (the INSERT, earlier changes) stay under
    -- the old key, so the story under the new key began with that UPDATE, as if it had no INSERT.
    -- Each such UPDATE adds a segment: the rows under the key it moved from, from the latest event
    -- that brought the row to that key (an INSERT, a BASELINE or another key-changing UPDATE, which
    -- adds its own segment in turn) up to the move; a row that had the old key before (renamed away,
    -- or deleted, since) or takes it afterwards is another row's story. All of the given key's own
    -- rows are told.
    -- why segments found by statements, not one recursive query: a key-changing UPDATE is told
    -- from old_row against the key's constant value (one containment per row, no parsing), and a
    -- busy row (a position's every fill) is read once; the recursive form scanned whole partitions
    v_seg_keys := array[history.key::text, v_key];
    v_seg_from := array[null::bigint, null];
    v_seg_to := array[null::bigint, null];
    select array_agg(l.audit_id order by l.audit_id) into v_moves
    from audit.log l
    where l.table_name = v_table and l.row_key in (history.key::text, v_key)
      and l.operation = 'UPDATE' and not l.old_row @> history.key;
    v_pending := coalesce(v_moves, '{}');
    while cardinality(v_pending) > 0 and cardinality(v_seg_keys) < 1000 loop
        v_move := v_pending[1];
        v_pending := v_pending[2:];
        -- the key the row had before move v_move, written as audit.row_key writes keys
        select (select jsonb_object_agg(c, l.old_row -> c) from jsonb_object_keys(l.row_key::jsonb) c)
        into v_old
        from audit.log l
        where l.table_name = v_table and l.audit_id = v_move;
        -- the latest event under it before the move that brought the row there
        select l.audit_id, l.operation = 'UPDATE' into v_from, v_entered_by_move
        from audit.log l
        where l.table_name = v_table and l.row_key = v_old::text and l.audit_id < v_move
          and (l.operation in ('INSERT', 'BASELINE') or (l.operation = 'UPDATE' and not l.old_row @> v_old))
        order by l.audit_id desc
        limit 1;
        -- a segment read already (a key moved back and forth): not again
        if not exists (select from unnest(v_seg_keys, v_seg_to) g (row_key, to_id)
                       where g.row_key = v_old::text and g.to_id = v_move) then
            v_seg_keys := v_seg_keys || v_old::text;
            v_seg_from := v_seg_from || v_from;
            v_seg_to := v_seg_to || v_move;
            if v_entered_by_move then
                v_pending := v_pending || v_from;
            end if;
        end if;
    end loop;
    return query
    select distinct on (l.audit_id)
           l.audit_id, l.logged_at, l.operation, l.old_row, l.new_row, l.actor, l.db_role, l.txid
    from unnest(v_seg_keys, v_seg_from, v_seg_to) s (row_key, from_id, to_id)
    join audit.log l on l.table_name = v_table and l.row_key = s.row_key
                    and (s.from_id is null or l.audit_id >= s.from_id)
                    and (s.to_id is null or l.audit_id < s.to_id)
    where s.row_key is not null
    order by l.audit_id;
    -- why check an empty story's key: a key that names other columns or spells a number as a string
    -- ({"order_id": "42"}) matches no row_key, and an empty story reads as "never changed"; a key
    -- of the table as logged (one index probe) shows the names and json types it must have. Only
    -- when nothing was found: a story told costs nothing more.
    if not found and history.key is not null then
        select l.row_key::jsonb into v_logged from audit.log l where l.table_name = v_table limit 1;
        if v_logged is not null
           and exists (select from jsonb_each(history.key) g full join jsonb_each(v_logged) w on w.key = g.key
                       where g.key is null or w.key is null
                          or (jsonb_typeof(g.value) <> jsonb_typeof(w.value)
                              and 'null' not in (jsonb_typeof(g.value), jsonb_typeof(w.value)))) then
            raise exception 'key % does not match the key columns of %', history.key, v_table
                using errcode = '22S09',
                      detail = format('%s is logged with keys like %s.', v_table, v_logged),
                      hint = 'Name every key column once, with its value''s json type as logged (a number, not a string).';
        end if;
    end if;
end;
$$;
comment on function audit.history(text, jsonb) is
    'Every audit row of one table row, oldest first, e.g. audit.history(''trading.orders'', ''{"order_id": 42}''), also those logged under the keys it had before an UPDATE changed its key; the table by its schema-qualified name, also one since dropped or renamed; a number in the key matches with or without trailing fractional zeros (42.0 finds 42); a key that finds nothing and whose columns or json types differ from the table''s logged keys is refused (22S09). A session scoped to a user needs audit:read (42S01).';

create or replace function internal.audited_tables()
    returns table (table_name text, relid regclass, key1 text, key2 text, redacted text[])
    stable
    language sql
as $$
    -- Each table with an audit insert trigger (audit.log_changes, or a table's own
    -- audit.log_changes_<schema>_<table> from 90_audit_triggers.sql.j2, which takes the same
    -- arguments), with the key columns and the columns left out of its images, read from the
    -- trigger's arguments.
    select format('%I.%I', n.nspname, c.relname),
           c.oid::regclass,
           a.args[1],
           case when cardinality(a.args) > 1 and left(a.args[2], 1) <> '-' then a.args[2] end,
           array(select substr(x, 2) from unnest(a.args) x where left(x, 1) = '-')
    from pg_catalog.pg_trigger t
    join pg_catalog.pg_class c on c.oid = t.tgrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    -- why decode each part back: encode(…, 'escape') writes every byte above 0x7f as \ooo (and a
    -- backslash as \\), so a key column named "clé" was read as "cl\303\251"; the parts are split
    -- at the escaped NUL that ends each argument, then turned back into the bytes they were
    cross join lateral (
        select array(select convert_from(decode(x.part, 'escape'), pg_catalog.getdatabaseencoding())
                     from unnest((string_to_array(encode(t.tgargs, 'escape'), E'\\000'))[1:t.tgnargs])
                          with ordinality x (part, n)
                     order by x.n) as args
    ) a
    join pg_catalog.pg_proc p on p.oid = t.tgfoid
    where p.pronamespace = 'audit'::regnamespace
      and (p.proname = 'log_changes' or p.proname like E'log\\_changes\\_%')
      and t.tgtype & 4 <> 0      -- fires on INSERT
      and not t.tgisinternal
      and c.relkind in ('r', 'p')
$$;
comment on function internal.audited_tables() is
    'Tables written to the audit log, with their key columns and redacted columns (from their audit trigger arguments).';

create or replace procedure audit.record_baseline()
    language plpgsql
as $$
-- The first image of the rows written before their table was audited: rows the migrations seed
-- (exchanges, roles, permissions, the security policy) and the rows of a table that gains its
-- audit triggers later. For each audited table that has no audit row at all, one BASELINE row per
-- existing row; tables already in the log are left alone, so every later migrate costs one index
-- probe per table. Called by internal.finish_migrate.
declare
    v_table record;
begin
    for v_table in select * from internal.audited_tables() a order by a.table_name loop
        continue when exists (select from audit.log l where l.table_name = v_table.table_name);
        execute format(
            'insert into audit.log (table_name, operation, row_key, new_row)
             select %1$L, ''BASELINE'', audit.row_key(x.image, %2$L, %3$L), x.image
             from (select to_jsonb(t) - %4$L::text[] as image from %5$s t) x',
            v_table.table_name, v_table.key1, v_table.key2, v_table.redacted, v_table.relid);
    end loop;
end;
$$;
comment on procedure audit.record_baseline() is
    'Writes a BASELINE audit row for each row of an audited table that has no audit row yet (rows from before its audit triggers).';
