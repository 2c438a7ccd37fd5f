-- spreadedge functions: audit triggers
-- Which tables are audited, and by which key. Every business table gets three statement-level
-- triggers (transition tables allow one event per trigger). Not audited, because they are derived or
-- are logs themselves: trading.order_keys and trading.trade_keys (copies of order and trade keys),
-- trading.order_events (already a log of every status change), trading.daily_pnl and
-- trading.hourly_pnl (rollups of trades and funding, checked against them), and audit.log itself,
-- which is append-only.
-- Trigger names carry a numeric prefix because PostgreSQL fires triggers in name order.

-- ref.exchanges, keyed by exchange_id
create or replace trigger _900_audit_insert
    after insert on ref.exchanges
    referencing new table as new_rows
    for each statement execute function audit.log_changes('exchange_id');
create or replace trigger _900_audit_update
    after update on ref.exchanges
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('exchange_id');
create or replace trigger _900_audit_delete
    after delete on ref.exchanges
    referencing old table as old_rows
    for each statement execute function audit.log_changes('exchange_id');

-- ref.exchange_markets, keyed by exchange_id, market_type
create or replace trigger _900_audit_insert
    after insert on ref.exchange_markets
    referencing new table as new_rows
    for each statement execute function audit.log_changes('exchange_id', 'market_type');
create or replace trigger _900_audit_update
    after update on ref.exchange_markets
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('exchange_id', 'market_type');
create or replace trigger _900_audit_delete
    after delete on ref.exchange_markets
    referencing old table as old_rows
    for each statement execute function audit.log_changes('exchange_id', 'market_type');

-- ref.instruments, keyed by instrument_id
create or replace trigger _900_audit_insert
    after insert on ref.instruments
    referencing new table as new_rows
    for each statement execute function audit.log_changes('instrument_id');
create or replace trigger _900_audit_update
    after update on ref.instruments
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('instrument_id');
create or replace trigger _900_audit_delete
    after delete on ref.instruments
    referencing old table as old_rows
    for each statement execute function audit.log_changes('instrument_id');

-- trading.strategies, keyed by strategy_id
create or replace trigger _900_audit_insert
    after insert on trading.strategies
    referencing new table as new_rows
    for each statement execute function audit.log_changes('strategy_id');
create or replace trigger _900_audit_update
    after update on trading.strategies
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('strategy_id');
create or replace trigger _900_audit_delete
    after delete on trading.strategies
    referencing old table as old_rows
    for each statement execute function audit.log_changes('strategy_id');

-- trading.orders, keyed by order_id
create or replace trigger _900_audit_insert
    after insert on trading.orders
    referencing new table as new_rows
    for each statement execute function audit.log_changes('order_id');
create or replace trigger _900_audit_update
    after update on trading.orders
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('order_id');
create or replace trigger _900_audit_delete
    after delete on trading.orders
    referencing old table as old_rows
    for each statement execute function audit.log_changes('order_id');

-- trading.trades, keyed by trade_id
create or replace trigger _900_audit_insert
    after insert on trading.trades
    referencing new table as new_rows
    for each statement execute function audit.log_changes('trade_id');
create or replace trigger _900_audit_update
    after update on trading.trades
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('trade_id');
create or replace trigger _900_audit_delete
    after delete on trading.trades
    referencing old table as old_rows
    for each statement execute function audit.log_changes('trade_id');

-- trading.positions, keyed by strategy_id, instrument_id
create or replace trigger _900_audit_insert
    after insert on trading.positions
    referencing new table as new_rows
    for each statement execute function audit.log_changes('strategy_id', 'instrument_id');
create or replace trigger _900_audit_update
    after update on trading.positions
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('strategy_id', 'instrument_id');
create or replace trigger _900_audit_delete
    after delete on trading.positions
    referencing old table as old_rows
    for each statement execute function audit.log_changes('strategy_id', 'instrument_id');

-- trading.funding_payments, keyed by funding_id
create or replace trigger _900_audit_insert
    after insert on trading.funding_payments
    referencing new table as new_rows
    for each statement execute function audit.log_changes('funding_id');
create or replace trigger _900_audit_update
    after update on trading.funding_payments
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('funding_id');
create or replace trigger _900_audit_delete
    after delete on trading.funding_payments
    referencing old table as old_rows
    for each statement execute function audit.log_changes('funding_id');

-- trading.portfolio_snapshots, keyed by snapshot_id
create or replace trigger _900_audit_insert
    after insert on trading.portfolio_snapshots
    referencing new table as new_rows
    for each statement execute function audit.log_changes('snapshot_id');
create or replace trigger _900_audit_update
    after update on trading.portfolio_snapshots
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('snapshot_id');
create or replace trigger _900_audit_delete
    after delete on trading.portfolio_snapshots
    referencing old table as old_rows
    for each statement execute function audit.log_changes('snapshot_id');

-- Auth tables. Secret columns are left out of the logged rows (the '-column' arguments);
-- auth.sessions is not audited row by row (every request slides its expiry): logins, logouts and
-- revocations are audit.security_events.
-- auth.security_policy, keyed by singleton
create or replace trigger _900_audit_insert
    after insert on auth.security_policy
    referencing new table as new_rows
    for each statement execute function audit.log_changes('singleton');
create or replace trigger _900_audit_update
    after update on auth.security_policy
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('singleton');
create or replace trigger _900_audit_delete
    after delete on auth.security_policy
    referencing old table as old_rows
    for each statement execute function audit.log_changes('singleton');
-- auth.roles, keyed by role_name
create or replace trigger _900_audit_insert
    after insert on auth.roles
    referencing new table as new_rows
    for each statement execute function audit.log_changes('role_name');
create or replace trigger _900_audit_update
    after update on auth.roles
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('role_name');
create or replace trigger _900_audit_delete
    after delete on auth.roles
    referencing old table as old_rows
    for each statement execute function audit.log_changes('role_name');
-- auth.permissions, keyed by permission
create or replace trigger _900_audit_insert
    after insert on auth.permissions
    referencing new table as new_rows
    for each statement execute function audit.log_changes('permission');
create or replace trigger _900_audit_update
    after update on auth.permissions
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('permission');
create or replace trigger _900_audit_delete
    after delete on auth.permissions
    referencing old table as old_rows
    for each statement execute function audit.log_changes('permission');
-- auth.role_permissions, keyed by role_name, permission
create or replace trigger _900_audit_insert
    after insert on auth.role_permissions
    referencing new table as new_rows
    for each statement execute function audit.log_changes('role_name', 'permission');
create or replace trigger _900_audit_update
    after update on auth.role_permissions
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('role_name', 'permission');
create or replace trigger _900_audit_delete
    after delete on auth.role_permissions
    referencing old table as old_rows
    for each statement execute function audit.log_changes('role_name', 'permission');
-- auth.users, keyed by user_id; without password_hash, totp_secret
create or replace trigger _900_audit_insert
    after insert on auth.users
    referencing new table as new_rows
    for each statement execute function audit.log_changes('user_id', '-password_hash', '-totp_secret');
create or replace trigger _900_audit_update
    after update on auth.users
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('user_id', '-password_hash', '-totp_secret');
create or replace trigger _900_audit_delete
    after delete on auth.users
    referencing old table as old_rows
    for each statement execute function audit.log_changes('user_id', '-password_hash', '-totp_secret');
-- auth.user_roles, keyed by user_id, role_name
create or replace trigger _900_audit_insert
    after insert on auth.user_roles
    referencing new table as new_rows
    for each statement execute function audit.log_changes('user_id', 'role_name');
create or replace trigger _900_audit_update
    after update on auth.user_roles
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('user_id', 'role_name');
create or replace trigger _900_audit_delete
    after delete on auth.user_roles
    referencing old table as old_rows
    for each statement execute function audit.log_changes('user_id', 'role_name');
-- auth.master_keys, keyed by key_version; without verifier
create or replace trigger _900_audit_insert
    after insert on auth.master_keys
    referencing new table as new_rows
    for each statement execute function audit.log_changes('key_version', '-verifier');
create or replace trigger _900_audit_update
    after update on auth.master_keys
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('key_version', '-verifier');
create or replace trigger _900_audit_delete
    after delete on auth.master_keys
    referencing old table as old_rows
    for each statement execute function audit.log_changes('key_version', '-verifier');
-- auth.api_keys, keyed by key_id; without api_key, api_secret, passphrase, fingerprint
create or replace trigger _900_audit_insert
    after insert on auth.api_keys
    referencing new table as new_rows
    for each statement execute function audit.log_changes('key_id', '-api_key', '-api_secret', '-passphrase', '-fingerprint');
create or replace trigger _900_audit_update
    after update on auth.api_keys
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('key_id', '-api_key', '-api_secret', '-passphrase', '-fingerprint');
create or replace trigger _900_audit_delete
    after delete on auth.api_keys
    referencing old table as old_rows
    for each statement execute function audit.log_changes('key_id', '-api_key', '-api_secret', '-passphrase', '-fingerprint');
-- trading.spread_trades, keyed by spread_trade_id
create or replace trigger _900_audit_insert
    after insert on trading.spread_trades
    referencing new table as new_rows
    for each statement execute function audit.log_changes('spread_trade_id');
create or replace trigger _900_audit_update
    after update on trading.spread_trades
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('spread_trade_id');
create or replace trigger _900_audit_delete
    after delete on trading.spread_trades
    referencing old table as old_rows
    for each statement execute function audit.log_changes('spread_trade_id');

-- monitor.alert_rules, keyed by rule_id: who changed a rule, and from what
create or replace trigger _900_audit_insert
    after insert on monitor.alert_rules
    referencing new table as new_rows
    for each statement execute function audit.log_changes('rule_id');
create or replace trigger _900_audit_update
    after update on monitor.alert_rules
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('rule_id');
create or replace trigger _900_audit_delete
    after delete on monitor.alert_rules
    referencing old table as old_rows
    for each statement execute function audit.log_changes('rule_id');

-- monitor.risk_limits, keyed by limit_id: who changed a limit or a kill switch, and from what
create or replace trigger _900_audit_insert
    after insert on monitor.risk_limits
    referencing new table as new_rows
    for each statement execute function audit.log_changes('limit_id');
create or replace trigger _900_audit_update
    after update on monitor.risk_limits
    referencing old table as old_rows new table as new_rows
    for each statement execute function audit.log_changes('limit_id');
create or replace trigger _900_audit_delete
    after delete on monitor.risk_limits
    referencing old table as old_rows
    for each statement execute function audit.log_changes('limit_id');

-- audit.log is append-only
create or replace trigger _100_append_only
    before update or delete or truncate on audit.log
    for each statement execute function audit.refuse_change();
-- trades are immutable facts
create or replace trigger _100_append_only
    before update or delete or truncate on trading.trades
    for each statement execute function audit.refuse_change();
-- security events are a log too
create or replace trigger _100_append_only
    before update or delete or truncate on audit.security_events
    for each statement execute function audit.refuse_change();
