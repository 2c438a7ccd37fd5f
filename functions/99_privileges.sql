-- spreadedge functions: EXECUTE and view privileges
-- Re-applied after every migrate, so this file is the whole truth about who may call what. Functions
-- are executable by PUBLIC when created; that is taken back here first. The API functions run as
-- spreadedge_owner (security definer) and check the session's scope and permissions themselves.

revoke all on all routines in schema ref, trading, market, auth, monitor, audit, ops, internal from public;

-- readonly (and, by membership, app and engine): what row-level security and the views call, and
-- the read API
grant execute on function internal.session_user_id(), internal.session_permissions(),
                          internal.visible_strategy_ids()
    to spreadedge_readonly, spreadedge_auditor;
grant execute on function trading.mark_price, trading.asset_price, trading.is_legal_transition,
                          trading.position_after_fill, trading.get_position, trading.pnl_summary,
                          trading.spread_trade_pnl, trading.spread_trade_summary
    to spreadedge_readonly;
grant select on trading.position_summary, trading.open_positions, trading.order_history, trading.active_orders,
                trading.trade_history
    to spreadedge_readonly;
grant execute on function market.interval_length, market.candle_start, market.spread_opportunities,
                          market.sma, market.ema, market.rsi, market.macd, market.bollinger, market.vwap,
                          market.atr
    to spreadedge_readonly;
grant select on market.current_spreads to spreadedge_readonly;
-- why: a view's function calls are checked against its reader's EXECUTE privilege (inlining too),
-- and market.current_spreads computes its bps with these two formulas: without them every reader
-- but a superuser got "permission denied for function net_bps_of_legs"
grant execute on function internal.gross_bps, internal.net_bps_of_legs, internal.max_quote_age to spreadedge_readonly;
-- the history pages (the REST API) are security invoker, so row-level security decides what a
-- scoped session sees; they call these helpers as the caller
grant execute on function trading.order_history_page, trading.order_detail, trading.trade_history_page,
                          trading.trade_summary, trading.position_list, trading.portfolio_snapshot_page,
                          trading.portfolio_latest, ops.health(text[])
    to spreadedge_readonly;
grant execute on function internal.require_permission, internal.iso_utc, internal.page_cursor,
                          internal.page_filters, internal.read_page_cursor, internal.check_page_request,
                          internal.check_time_range, internal.check_enum_value,
                          internal.instrument_ids_matching, internal.strategy_ids_named, internal.order_item,
                          internal.order_page_rows, internal.trade_item, internal.trade_page_rows,
                          internal.snapshot_item
    to spreadedge_readonly;

-- app: the trading API and the user-facing security API
grant execute on function ref.upsert_instrument, trading.create_strategy, trading.place_order,
                          trading.acknowledge_order, trading.amend_order, trading.cancel_order,
                          trading.reject_order, trading.expire_order, trading.record_fill, trading.record_fill_fee,
                          trading.record_funding, trading.take_portfolio_snapshot, trading.open_spread_trade,
                          trading.record_exchange_fill
    to spreadedge_app;
grant execute on function auth.login, auth.validate_session, auth.logout, auth.revoke_sessions,
                          auth.user_id_of, auth.create_user, auth.change_password, auth.disable_user,
                          auth.enable_user, auth.unlock_user, auth.grant_role, auth.revoke_role,
                          auth.enroll_totp, auth.confirm_totp, auth.disable_totp, auth.set_security_policy,
                          auth.store_api_key, auth.revoke_api_key
    to spreadedge_app;
grant select on auth.user_accounts, auth.api_key_list to spreadedge_app;

-- engine: decrypting exchange API keys is the trading engine's alone
grant execute on function auth.reveal_api_key to spreadedge_engine;

-- auditor: one row's story, and who the users are. audit.history is security invoker and checks
-- audit:read for a scoped session with internal.require_permission, a name it resolves as the
-- auditor, hence USAGE on internal (which holds no function the auditor may run but the helpers
-- granted above and here)
grant usage on schema internal to spreadedge_auditor;
grant execute on function audit.history, internal.require_permission to spreadedge_auditor;
grant select on auth.user_accounts to spreadedge_auditor;

-- Market data loading (market.stage_rows, market.load_staged_*: spreadedge ingest), candle rollups
-- and indicator computation (market.rollup_candles, market.compute_indicators) write the market
-- tables: operators and pg_cron run them as the database owner or a superuser.
-- auth.rotate_master_key is granted to no role: operators run it (spreadedge keys rotate) as the
-- database owner or a superuser.

-- ops.health (security definer) reads pg_partman's configuration and partitions as spreadedge_owner.
grant usage on schema partman to spreadedge_owner;
grant select on partman.part_config to spreadedge_owner;

-- ============================================================================
-- ops (issue 7: operations)
-- ============================================================================
-- People read the tuning views, the performance summary and where partitions stand. Index
-- advice, index builds, partition configuration and repair, row retention, cleanup, the backup
-- catalog's writers and the full health report are for operators, who run them as the database
-- owner or a superuser (spreadedge tune|partitions|cleanup|backup|health): no grant.
grant select on ops.slow_queries, ops.index_usage, ops.unused_indexes, ops.duplicate_indexes,
                ops.missing_index_candidates, ops.table_health
    to spreadedge_readonly;
grant execute on function ops.performance_summary, internal.slow_query_ms
    to spreadedge_readonly;

-- ============================================================================
-- monitor (issue 5): metrics, alert rules and alerts, the notification outbox, risk limits
-- ============================================================================
-- readonly (people, dashboards): the monitoring views. The views over the trading tables and the
-- server statistics are security invoker (row-level security and the reader's privileges apply);
-- the views of the monitor state read the private monitor tables with the owner's rights and apply
-- the session's scope themselves (functions/69_monitor_views.sql).
grant select on monitor.orders_per_status, monitor.open_positions, monitor.trades_per_period,
                monitor.query_performance, monitor.disk_usage, monitor.latest_metrics,
                monitor.alert_rule_list, monitor.alert_list, monitor.risk_limit_list,
                monitor.risk_event_list, monitor.notification_list
    to spreadedge_readonly;
-- app: custom metrics, alert rules and acknowledgements, risk limits and kill switches (scoped
-- sessions need alerts:manage or risk:manage), and the calls of `spreadedge notify worker`
grant execute on function monitor.record_metric, monitor.add_alert_rule, monitor.set_alert_rule_enabled,
                          monitor.acknowledge_alert, monitor.set_risk_limit, monitor.set_kill_switch,
                          monitor.requeue_notification, monitor.claim_notifications,
                          monitor.complete_notification, monitor.fail_notification,
                          monitor.record_notification_recipients, monitor.next_notification_due
    to spreadedge_app;
-- monitor.collect_metrics and monitor.evaluate_alert_rules write the monitor tables: pg_cron and
-- operators run them as the database owner or a superuser, like the market data maintenance.
