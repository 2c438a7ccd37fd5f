-- spreadedge bench: forget the statement statistics before a write run
select pg_stat_statements_reset();
