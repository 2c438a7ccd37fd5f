-- spreadedge functions: alerts
-- monitor.evaluate_alert_rules opens an alert when a rule fires, resolves it when the condition
-- clears, records every transition and queues its notifications; it never records a transition
-- earlier than the rule's latest one (a rule with a later transition is left alone), so every
-- alert's story reads forwards; internal.resolve_alert_of_disabled_rule (a disabled rule's open
-- alert resolves at once); monitor.acknowledge_alert.

create or replace function internal.alert_message(
    p_rule       monitor.alert_rules,
    p_transition monitor.alert_transition,
    p_alert_id   bigint,
    p_value      numeric,
    p_at         timestamptz
)
    returns jsonb
    stable
    language sql
as $$
    -- The notification of an alert transition: subject, text and the facts, as the outbox keeps it.
    select jsonb_build_object(
        'source', 'alert',
        'subject', s.subject,
        'text', s.subject || coalesce(E'\n' || p_rule.description, ''),
        'alert_id', p_alert_id,
        'rule', p_rule.name,
        'kind', p_rule.kind,
        'transition', p_transition,
        'severity', p_rule.severity,
        'watching', s.watching,
        'value', p_value,
        'operator', p_rule.operator,
        'threshold', p_rule.threshold,
        'at', internal.iso_utc(p_at))
    from (select w.watching,
                 format('[%s] %s %s: %s %s = %s (threshold %s %s)', upper(p_rule.severity::text collate "C"), p_rule.name,
                        p_transition, w.watching, p_rule.aggregate, coalesce(trim_scale(p_value)::text, 'no data'),
                        p_rule.operator, p_rule.threshold) as subject
          from (select coalesce(p_rule.metric,
                                (select format('%s %s/%s', p_rule.kind, e.code, i.symbol)
                                 from ref.instruments i join ref.exchanges e on e.exchange_id = i.exchange_id
                                 where i.instrument_id = p_rule.instrument_id)) as watching) w) s
$$;
comment on function internal.alert_message(monitor.alert_rules, monitor.alert_transition, bigint, numeric, timestamptz) is
    'The JSON message of an alert transition (subject, text, rule, value, threshold, time).';

create or replace function monitor.evaluate_alert_rules(evaluated_at timestamptz default now())
    returns table (alert_id bigint, rule text, transition monitor.alert_transition, value numeric, notified boolean)
    volatile
    -- why no JIT: over a million ticks the planner's cost for a thousand lateral tick and metric
    -- reads passes jit_above_cost, and compiling 174 functions took 0.7 s of a 1.1 s run that takes
    -- 35 ms without it
    set jit = off
    -- why UTC: evaluated_at - cooldown, and internal.alert_rule_values's evaluated_at - window,
    -- count days in the session TimeZone, so across a DST change a '1 day' cooldown or window was
    -- 23 or 25 hours (from a Berlin session a firing 23.5 hours after the last notified one was
    -- notified again); the message times are UTC too
    set timezone = 'UTC'
    language plpgsql
as $$
-- Evaluate every enabled rule at evaluated_at: a rule that fires with no open alert opens one
-- (notified unless a firing of the rule was notified within its cooldown, or it has no channels);
-- a firing alert that opened silently inside the cooldown and still fires once the cooldown is
-- over is notified then, once (a 'fired' transition of the same alert); an open (firing or
-- acknowledged) alert whose condition no longer holds is resolved (notified when its firing was).
-- A rule without data changes nothing (a count or sum over no values is 0, which is data). A
-- rule whose latest transition (its open alert's opening or acknowledgement, its last notified
-- firing, its previous alert's resolution) is later than evaluated_at is left alone by a run at a
-- time before now: no transition, nothing notified; the other rules are evaluated as
-- usual. So a backfill or a run at a past time after pg_cron ran at now never
-- resolves an alert before it opened, opens one before the previous one resolved, or counts a
-- cooldown backwards. A run at now (evaluated_at not before now()) evaluates such a rule, whose
-- times are ahead because the server's clock stepped back since, and records its transitions at
-- its latest time rather than now, so its story still reads forwards; its cooldown still counts
-- from its last notification's time. An open alert of a disabled rule (one the disabling transaction did not see)
-- is resolved first, whatever evaluated_at, as monitor.set_alert_rule_enabled would have: at the
-- time of the disabling and with its actor as the audit log recorded them (actor, else database
-- role), or now and no actor when the log no longer has the disabling. Returns the transitions
-- made, in the order they were recorded.
-- Runs are serialized: a run that overlaps another returns no rows at once. It must run in a READ
-- COMMITTED transaction (22S09 otherwise). pg_cron runs it every minute, as the database owner or
-- a superuser.
#variable_conflict use_column
declare
    v_rule        monitor.alert_rules;
    v_actor       text;
    v_disabled_at timestamptz;
    v_event_id    bigint;
    -- why a variable: as a value (not an expression of evaluated_at, which is computed only as
    -- the plan runs) it lets the planner prune ticks, quotes and metrics to the partitions the
    -- longest window can reach (internal.alert_rule_values)
    v_since       timestamptz;
begin
    -- why: the runs take turns through the advisory lock below, but a REPEATABLE READ or
    -- SERIALIZABLE snapshot is taken before it, so a run could miss the alert the previous run
    -- committed and open a second one (a raw unique violation), resolve one already resolved or
    -- notify twice; READ UNCOMMITTED is READ COMMITTED in PostgreSQL
    perform internal.require_read_committed('monitor.evaluate_alert_rules',
        'Call it in a transaction of its own at the default isolation level (as pg_cron does): each run must see what the previous one committed.');
    perform internal.check_time(evaluated_at, 'evaluated_at');
    if not pg_try_advisory_xact_lock(hashtext('spreadedge.evaluate_alert_rules')) then
        return;
    end if;
    v_since := evaluate_alert_rules.evaluated_at - interval '33 days';
    -- why: a disabling transaction under REPEATABLE READ or SERIALIZABLE whose snapshot predates a
    -- run that committed a new alert does not see that alert (the evaluation's lock orders the two
    -- but cannot renew the snapshot), and nothing evaluates a disabled rule, so the alert stayed
    -- open for good. why cheap: without such an alert this is one look at the disabled rules, each
    -- probed in the index of open alerts (alerts_one_open_per_rule_idx); the audit log is read
    -- only for a rule that has one. The actor and time come from the audit log because the rule
    -- keeps neither: the disabling recorded coalesce(spreadedge.actor, session_user), which is the
    -- log's coalesce(actor, db_role), at its transaction time
    for v_rule in
        select r.*
        from monitor.alert_rules r
        where not r.is_enabled
          and exists (select from monitor.alerts a where a.rule_id = r.rule_id and a.status <> 'resolved')
        order by r.rule_id
    loop
        select coalesce(l.actor, l.db_role), l.logged_at into v_actor, v_disabled_at
        from audit.log l
        where l.table_name = 'monitor.alert_rules'
          and l.row_key = audit.row_key(jsonb_build_object('rule_id', v_rule.rule_id), 'rule_id', null)
          and l.operation = 'UPDATE'
          and (l.old_row ->> 'is_enabled')::boolean and not (l.new_row ->> 'is_enabled')::boolean
        order by l.audit_id desc
        limit 1;
        v_event_id := internal.resolve_alert_of_disabled_rule(v_rule, v_actor, v_disabled_at);
        return query
        select ev.alert_id, v_rule.name, ev.transition, ev.value, ev.notified
        from monitor.alert_events ev
        where ev.event_id = v_event_id;
    end loop;
    return query
    with resolved_later as materialized (
        -- the rules whose previous alert resolved after evaluated_at (a backfill, or a clock that
        -- stepped back), through alerts_resolved_idx: normally none
        select p.rule_id, max(p.resolved_at) as resolved_at
        from monitor.alerts p
        where p.resolved_at > evaluate_alert_rules.evaluated_at
        group by p.rule_id
    ),
    evaluated as materialized (
        select r, v.value, internal.compare(v.value, r.operator, r.threshold) as firing, a.alert_id as open_alert_id,
               a.status as open_status, a.notified as open_notified, l.resolved_at as resolved_later_at,
               -- at: when the rule's transitions are recorded (see where)
               case when evaluate_alert_rules.evaluated_at >= now()
                    then greatest(evaluate_alert_rules.evaluated_at, r.last_notified_at, a.opened_at,
                                  a.acknowledged_at, l.resolved_at)
                    else evaluate_alert_rules.evaluated_at end as at
        from internal.alert_rule_values(evaluate_alert_rules.evaluated_at, v_since) v
        join monitor.alert_rules r on r.rule_id = v.rule_id
        left join monitor.alerts a on a.rule_id = v.rule_id and a.status <> 'resolved'
        left join resolved_later l on l.rule_id = v.rule_id
        -- why: a transition is never recorded before the rule's latest one. These are the times
        -- of its open alert's transitions (a late notification is at last_notified_at) and of its
        -- last notified firing, which would otherwise count the cooldown backwards; all were read
        -- anyway. The previous alert's resolution matters only to a rule about to open an alert:
        -- see opened. A run at an earlier time (a backfill) leaves such a rule alone. A run at now
        -- evaluates it, its transitions recorded at that latest time.
        -- why: a rule's latest time is later than now only when the server's clock stepped back
        -- after it (a clock that ran ahead set right), and left alone the rule could neither
        -- resolve nor open an alert, nor be notified, until the clock caught up (hours, for a
        -- clock set right hours back)
        where evaluate_alert_rules.evaluated_at >= now()
           or coalesce(greatest(r.last_notified_at, a.opened_at, a.acknowledged_at), '-infinity')
              <= evaluate_alert_rules.evaluated_at
    ),
    opened as (
        insert into monitor.alerts as a (rule_id, severity, opened_value, threshold, opened_at, notified)
        select (e.r).rule_id, (e.r).severity, e.value, (e.r).threshold, e.at,
               cardinality((e.r).channels) > 0
               and ((e.r).last_notified_at is null
                    or (e.r).last_notified_at <= e.at - (e.r).cooldown)
        from evaluated e
        where e.firing and e.open_alert_id is null
          -- why: a rule's alerts follow one another; a firing earlier than the previous alert's
          -- resolution belongs to that alert. why resolved_later rather than not exists: alerts
          -- has no index by rule, and the planner, expecting few rules to open an alert, ran not
          -- exists as a scan of every alert per opening rule (10 s for 250 rules over 200,000
          -- alerts); resolved_later reads the few alerts resolved after evaluated_at once
          and (e.resolved_later_at is null or e.resolved_later_at <= e.at)
        returning a.alert_id, a.rule_id, a.opened_value as value, a.notified
    ),
    late as (
        -- why: an alert opened inside the cooldown is silent, and when it keeps firing on-call was
        -- last told "resolved"; once the cooldown is over its firing is notified, once. An
        -- acknowledged alert is left alone: a person has seen it.
        -- why a.status and a.notified too: e read the alert before this run waited for its row; an
        -- acknowledgement committed meanwhile is seen only on the row itself (READ COMMITTED
        -- re-checks the updated row's own conditions)
        update monitor.alerts a
        set notified = true
        from evaluated e
        where a.alert_id = e.open_alert_id and e.firing and a.status = 'firing' and not a.notified
          and cardinality((e.r).channels) > 0
          and ((e.r).last_notified_at is null
               or (e.r).last_notified_at <= e.at - (e.r).cooldown)
        returning a.alert_id, a.rule_id, e.value, a.notified
    ),
    resolved as (
        update monitor.alerts a
        set status = 'resolved', resolved_at = e.at, resolved_value = e.value
        from evaluated e
        where a.alert_id = e.open_alert_id and not e.firing
          -- why: an acknowledgement committed while this run waited for the row is seen only on
          -- the row itself; one made after evaluated_at must not be followed by a resolution
          -- before it (the next run at a later time resolves the alert)
          and coalesce(a.acknowledged_at, '-infinity') <= e.at
        returning a.alert_id, a.rule_id, e.value, a.notified
    ),
    transitions as (
        select o.alert_id, o.rule_id, 'fired'::monitor.alert_transition as transition, o.value, o.notified
        from opened o
        union all
        select l.alert_id, l.rule_id, 'fired'::monitor.alert_transition, l.value, l.notified
        from late l
        union all
        select d.alert_id, d.rule_id, 'resolved'::monitor.alert_transition, d.value, d.notified
        from resolved d
    ),
    events as (
        insert into monitor.alert_events as ev (alert_id, rule_id, transition, value, notified, occurred_at)
        select t.alert_id, t.rule_id, t.transition, t.value, t.notified, e.at
        from transitions t
        join evaluated e on (e.r).rule_id = t.rule_id
        returning ev.event_id, ev.alert_id, ev.rule_id, ev.transition, ev.value, ev.notified
    ),
    queued as (
        insert into monitor.notifications (channel, subject, payload, alert_event_id)
        select c.channel, m.message ->> 'subject', m.message, ev.event_id
        from events ev
        join evaluated e on (e.r).rule_id = ev.rule_id
        cross join lateral (select internal.alert_message(e.r, ev.transition, ev.alert_id, ev.value,
                                                          e.at) as message) m
        cross join lateral unnest((e.r).channels) c(channel)
        where ev.notified
        returning 1
    ),
    remembered as (
        update monitor.alert_rules r
        set last_notified_at = e.at
        from (select o.rule_id from opened o where o.notified
              union all
              select l.rule_id from late l) n
        join evaluated e on (e.r).rule_id = n.rule_id
        where r.rule_id = n.rule_id
        returning 1
    )
    select ev.alert_id, (e.r).name, ev.transition, ev.value, ev.notified
    from events ev
    join evaluated e on (e.r).rule_id = ev.rule_id
    order by ev.event_id;
end;
$$;
comment on function monitor.evaluate_alert_rules(timestamptz) is
    'Evaluate every enabled alert rule (default now): open, resolve, record and notify (a firing silenced by the cooldown is notified once the cooldown is over); first resolves any open alert of a disabled rule (at the disabling''s time, with its actor, from the audit log); returns the transitions. A rule whose latest transition is later than evaluated_at is left alone (no transition, nothing notified) by a run at a past time, so no alert resolves before it opened or opens before the previous one resolved; a run at now (the clock stepped back since) records its transitions at that latest time. READ COMMITTED only (22S09). pg_cron runs it every minute.';

create or replace function internal.resolve_alert_of_disabled_rule(
    p_rule monitor.alert_rules,
    p_actor text,
    p_disabled_at timestamptz default now()
)
    returns bigint
    volatile
    language plpgsql
as $$
-- Resolve the open alert (firing or acknowledged) of p_rule, which is disabled, holding the
-- evaluation's lock: a 'resolved' transition with no value (the rule was not evaluated) and
-- p_actor, at p_disabled_at (never before the alert's latest transition), notified on the rule's
-- channels when the alert's firing was, as an evaluation notifies a resolution. Returns the
-- transition's event id; null when the rule has no open alert. monitor.set_alert_rule_enabled
-- calls it as it disables the rule, monitor.evaluate_alert_rules for an alert the disabling did
-- not see.
-- why: nothing evaluates a disabled rule, so its open alert stayed listed, counted in
-- alerts.open (firing a rule on it) and unresolved for good
declare
    v_alert    monitor.alerts;
    v_at       timestamptz;
    v_event_id bigint;
    v_message  jsonb;
begin
    select a.* into v_alert
    from monitor.alerts a
    where a.rule_id = p_rule.rule_id and a.status <> 'resolved'
    for update;
    if v_alert.alert_id is null then
        return null;
    end if;
    -- why greatest: an evaluation at a time ahead of now (up to a day) may have opened,
    -- or notified late, the alert later than now; its story must still read forwards
    v_at := greatest(coalesce(p_disabled_at, now()), v_alert.opened_at, v_alert.acknowledged_at,
                     (select max(e.occurred_at) from monitor.alert_events e where e.alert_id = v_alert.alert_id));
    update monitor.alerts a
    set status = 'resolved', resolved_at = v_at, resolved_value = null
    where a.alert_id = v_alert.alert_id;
    insert into monitor.alert_events (alert_id, rule_id, transition, value, notified, actor, occurred_at)
    values (v_alert.alert_id, p_rule.rule_id, 'resolved', null, v_alert.notified, p_actor, v_at)
    returning event_id into v_event_id;
    if not v_alert.notified then
        return v_event_id;
    end if;
    -- why its own subject: "last = no data" would tell on-call the feed stopped
    v_message := internal.alert_message(p_rule, 'resolved', v_alert.alert_id, null, v_at);
    v_message := v_message || jsonb_build_object(
        'subject', format('[%s] %s resolved: the rule was disabled by %s (%s %s %s %s)',
                          upper(p_rule.severity::text collate "C"), p_rule.name, coalesce(p_actor, 'unknown'),
                          v_message ->> 'watching', p_rule.aggregate, p_rule.operator, p_rule.threshold),
        'disabled_by', p_actor);
    v_message := v_message || jsonb_build_object(
        'text', (v_message ->> 'subject') || coalesce(E'\n' || p_rule.description, ''));
    insert into monitor.notifications (channel, subject, payload, alert_event_id)
    select c.channel, v_message ->> 'subject', v_message, v_event_id
    from unnest(p_rule.channels) c(channel);
    return v_event_id;
end;
$$;
comment on function internal.resolve_alert_of_disabled_rule(monitor.alert_rules, text, timestamptz) is
    'Resolves the open alert of a disabled rule at the disabling time (default now; never before the alert''s latest transition) with a resolved transition, a null value and the actor, notified on the rule''s channels when its firing was; returns the event id, null without an open alert.';

create or replace function monitor.acknowledge_alert(alert_id bigint, acknowledged_by text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- A person has seen a firing alert: firing -> acknowledged, recorded as a transition, at now, or
-- at the alert's latest transition when that is later. Idempotent
-- for an acknowledged alert; a resolved one raises alert_resolved (55S05), an unknown id
-- unknown_alert (23S14). The alert still resolves by itself when its condition clears. In a
-- session scoped to a user, an alert of a rule monitor.alert_rule_list does not show the user
-- (another user's strategy) is an unknown alert.
#variable_conflict use_column
declare
    v_alert monitor.alerts;
    v_at    timestamptz;
    v_actor text := coalesce(acknowledge_alert.acknowledged_by,
                             nullif(current_setting('spreadedge.actor', true), ''), session_user::text);
begin
    perform internal.require_permission('alerts:manage');
    if acknowledge_alert.alert_id is null then
        raise exception 'alert_id must be given, got null' using errcode = '22S09';
    end if;
    -- why: an empty or blank acknowledged_by was stored as who acknowledged the alert, and its
    -- history then named no one; not given (null) means the session's actor
    if btrim(acknowledge_alert.acknowledged_by, E' \t\n\r') = '' then
        raise exception 'acknowledged_by must name who acknowledged the alert, got "%"',
            acknowledge_alert.acknowledged_by
            using errcode = '22S09', hint = 'Give a name, or leave it out to record the session''s actor.';
    end if;
    -- why the scope of monitor.alert_list in the lookup: an alert of a rule on another user's
    -- strategy must read as unknown (neither acknowledged nor described as resolved), and must not
    -- even be locked; the view holds the one definition of what a session sees
    select a.* into v_alert
    from monitor.alerts a
    where a.alert_id = acknowledge_alert.alert_id
      and exists (select from monitor.alert_list l where l.alert_id = a.alert_id)
    for update;
    if v_alert.alert_id is null then
        raise exception 'alert % does not exist', acknowledge_alert.alert_id
            using errcode = '23S14';
    end if;
    if v_alert.status = 'resolved' then
        raise exception 'alert % is resolved (at %): there is nothing to acknowledge', v_alert.alert_id,
            internal.iso_utc(v_alert.resolved_at)
            using errcode = '55S05';
    end if;
    if v_alert.status = 'acknowledged' then
        return;
    end if;
    -- why greatest (as internal.resolve_alert_of_disabled_rule): an evaluation at a time ahead of
    -- now (up to a day) may have opened, or notified late, the alert later than now, and an
    -- acknowledgement at now() read as made before the alert fired; its story must read forwards
    v_at := greatest(now(), v_alert.opened_at,
                     (select max(e.occurred_at) from monitor.alert_events e where e.alert_id = v_alert.alert_id));
    update monitor.alerts a
    set status = 'acknowledged', acknowledged_at = v_at, acknowledged_by = v_actor
    where a.alert_id = v_alert.alert_id;
    insert into monitor.alert_events (alert_id, rule_id, transition, value, notified, actor, occurred_at)
    values (v_alert.alert_id, v_alert.rule_id, 'acknowledged', null, false, v_actor, v_at);
end;
$$;
comment on function monitor.acknowledge_alert(bigint, text) is
    'Acknowledge a firing alert (idempotent), at now or at the alert''s latest transition when that is later (an evaluation ahead of now opened it); raises 23S14 unknown_alert (also for an alert the scoped session cannot see), 55S05 alert_resolved, 22S09 for a null id or an empty or blank acknowledged_by (null is the session''s actor).';
