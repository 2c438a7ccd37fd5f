"""The project SQLSTATEs: one table in SQL, the same codes in Python, every raised code documented."""

import re
from pathlib import Path

import psycopg
import pytest

from spreadedge import errors

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def test_python_exception_classes_match_the_error_code_table(seeded):
    table = dict(seeded.execute("select name, sqlstate from ops.error_codes").fetchall())
    assert table == errors.CODES


def test_every_errcode_raised_in_functions_is_in_the_error_code_table(seeded):
    documented = {row[0] for row in seeded.execute("select sqlstate from ops.error_codes")}
    raised = set()
    for path in FUNCTIONS.glob("*.sql"):
        raised |= set(re.findall(r"'((?:22|23|28|42|55)S\d\d)'", path.read_text()))
    assert raised == documented


def test_translate_turns_a_project_sqlstate_into_its_exception_class(seeded):
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute("select trading.cancel_order(order_id => 77)")
    translated = errors.translate(caught.value)
    assert isinstance(translated, errors.BY_NAME["unknown_order"])
    assert (translated.sqlstate, translated.message) == ("23S04", "order 77 does not exist")
