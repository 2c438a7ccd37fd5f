-- spreadedge bench: the trader whose orders page bench/instructions.py counts
-- A trader owning the even live strategies, so the page merges (strategy, instrument) pairs as a
-- scoped trader's does through the API (bench/sql/api_reader.sql does the same for make bench).
-- Parameters: %(password)s (random, never shown).

select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}');

select auth.create_user(username => 'instructions-reader', password => %(password)s, roles => array['trader']);

update trading.strategies s
set owner_user_id = auth.user_id_of('instructions-reader')
where s.name ~ '^live[0-9]+$' and substr(s.name, 5)::integer %% 2 = 0;
