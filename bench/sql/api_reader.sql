-- spreadedge bench: the trader whose history the API bench reads
-- A trader owning every other s* strategy (so row-level security filters half the rows), with a
-- test-speed bcrypt cost. Parameters: %(password)s (random, never shown). Returns the user id.

select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}');

select auth.create_user(username => 'bench-reader', password => %(password)s, roles => array['trader']);

update trading.strategies s
set owner_user_id = auth.user_id_of('bench-reader')
where s.name ~ '^s[0-9]+$' and substr(s.name, 2)::integer %% 2 = 0;
