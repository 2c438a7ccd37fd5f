"""The bench's users get passwords every policy accepts (a refused one stopped `make bench`)."""

from __future__ import annotations

import psycopg
from bench.scratch import user_password


def test_bench_user_passwords_pass_a_policy_asking_for_all_four_classes(auth_db):
    auth_db.execute("select auth.set_security_policy(password_min_classes => 4)")
    refused = 0
    for _ in range(200):
        try:
            auth_db.execute("select internal.check_new_password(%s)", (user_password(),))
        except psycopg.errors.DataError:
            refused += 1
    assert refused == 0
