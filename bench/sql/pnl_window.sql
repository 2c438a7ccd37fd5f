-- spreadedge bench: the window of the timed query, fixed once for the check
select now() - interval '30 days' as since, now() as until;
