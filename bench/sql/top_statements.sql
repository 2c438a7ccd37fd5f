-- spreadedge bench: where a write run spent its time, from pg_stat_statements (track = all, so the
-- statements inside the functions and triggers are listed too). Parameter: %(limit)s rows.

select s.toplevel,
       s.calls,
       round(s.total_exec_time::numeric, 1) as total_ms,
       round((s.total_exec_time / nullif(s.calls, 0))::numeric, 4) as mean_ms,
       s.rows,
       regexp_replace(left(s.query, 300), '\s+', ' ', 'g') as query
from pg_stat_statements s
where s.dbid = (select d.oid from pg_database d where d.datname = current_database())
order by s.total_exec_time desc
limit %(limit)s;
