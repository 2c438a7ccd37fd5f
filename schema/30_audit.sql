-- spreadedge schema: audit
-- The audit log: one row per inserted, updated or deleted row of every business table, written by
-- statement-level triggers (functions/80_audit.sql) from transition tables so bulk writes stay cheap.
-- Append-only: UPDATE, DELETE and TRUNCATE on it fail; old partitions leave by retention only.

create sequence audit.log_audit_id_seq as bigint;
comment on sequence audit.log_audit_id_seq is 'Audit row ids, increasing in write order.';

create table audit.log (
    audit_id   bigint not null default nextval('audit.log_audit_id_seq'),
    logged_at  timestamptz not null default now(),
    table_name text not null,
    operation  text not null check (operation in ('INSERT', 'UPDATE', 'DELETE')),
    -- why text: the canonical text of the key's jsonb; a btree on text costs a fraction of one on jsonb
    row_key    text not null,
    old_row    jsonb,
    new_row    jsonb,
    -- why: the application user behind the change; the Python layer sets spreadedge.actor per transaction
    actor      text default nullif(current_setting('spreadedge.actor', true), ''),
    db_role    text not null default session_user,
    txid       bigint not null default txid_current(),
    primary key (audit_id, logged_at),
    check ((operation = 'INSERT') = (old_row is null)),
    check ((operation = 'DELETE') = (new_row is null))
) partition by range (logged_at);
comment on table audit.log is
    'Append-only audit log of the business tables, partitioned by month. Read one row''s story with audit.history.';
comment on column audit.log.audit_id is 'Audit row id, increasing in write order.';
comment on column audit.log.logged_at is 'Transaction time of the change.';
comment on column audit.log.table_name is 'Schema-qualified table, e.g. trading.orders.';
comment on column audit.log.operation is 'INSERT, UPDATE or DELETE.';
comment on column audit.log.row_key is 'The row''s key columns as json text, e.g. {"order_id": 42} (canonical jsonb output).';
comment on column audit.log.old_row is 'The row before the change (null for INSERT).';
comment on column audit.log.new_row is 'The row after the change (null for DELETE).';
comment on column audit.log.actor is 'Application user from the spreadedge.actor setting, if set.';
comment on column audit.log.db_role is 'Database role of the session that made the change.';
comment on column audit.log.txid is 'Transaction id: rows with the same txid changed together.';
create index log_table_key_idx on audit.log (table_name, row_key);
