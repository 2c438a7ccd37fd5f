-- spreadedge bench: one PnL summary, counted in instructions by bench/instructions.py
-- The query of bench/sql/pnl_summary.sql for a live strategy (drawn in turn). Most of its cost is
-- planning (pnl_summary plans for its arguments), which does not depend on how much history there is.
select *
from trading.pnl_summary(strategy => 'live' || %(strategy)s, since => now() - interval '30 days', until => now());
