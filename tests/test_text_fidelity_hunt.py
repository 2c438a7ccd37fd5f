"""Text fidelity end to end: names and free text in other scripts, with invisible characters or
white space, as the SQL API stores them and as the CLI shows them."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from auth_helpers import make_user, store_key
from spreadedge import textable
from spreadedge.cli import main
from trading_helpers import call

TOKYO = "\u4e1c\u4eac-\u0430\u0440\u0431"  # CJK (two terminal columns each) and Cyrillic


def invoke(url: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# -- the CLI: labels in other scripts ----------------------------------------------------------------


def test_metrics_show_writes_labels_outside_ascii_as_themselves_not_as_json_escapes(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    call(seeded, "trading.create_strategy", name=TOKYO)
    labels = {"strategy": TOKYO, "venue": "Z\u00fcrich"}
    call(seeded, "monitor.record_metric", name="app.lag_ms", value=Decimal(7), labels=Jsonb(labels))

    header, _rule, row = invoke(seeded_url, "metrics", "show", "--name", "app.lag_ms").splitlines()

    # jsonb orders keys by length: venue before strategy
    cell = '{"venue": "Z\u00fcrich", "strategy": "\u4e1c\u4eac-\u0430\u0440\u0431"}'
    assert row.startswith(f"app.lag_ms  {cell}  ")
    # the value (right-aligned) ends under its header's end, in terminal columns
    assert textable.width(row[: row.index("  7  ") + 3]) == header.index("value") + len("value")


def test_alerts_rules_write_a_strategy_label_outside_ascii_as_itself(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    call(seeded, "trading.create_strategy", name=TOKYO)
    call(
        seeded,
        "monitor.record_metric",
        name="app.lag_ms",
        value=Decimal(7),
        labels=Jsonb({"strategy": TOKYO}),
    )
    invoke(seeded_url, "alerts", "add-rule", "tokyo-lag", "--kind", "system", "--metric", "app.lag_ms",
           "--label", f"strategy={TOKYO}", "--operator", ">", "--threshold", "100")  # fmt: skip

    row = invoke(seeded_url, "alerts", "rules").splitlines()[2]

    assert row.startswith(
        'tokyo-lag  system  app.lag_ms  {"strategy": "\u4e1c\u4eac-\u0430\u0440\u0431"}  last '
    )


# -- API key labels that read as another ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("main ", 'the label "main " starts or ends with white space'),
        (" main", 'the label " main" starts or ends with white space'),
        ("main\n", 'the label "main\n" starts or ends with white space'),
        (
            "main\u200b",
            'the label "main\u200b" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
        ),
        (
            "ma\u00adin",
            'the label "ma\u00adin" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
        ),
        (
            "main\u00a0key",
            'the label "main\u00a0key" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
        ),
        (
            "cafe\u0301",
            'the label "cafe\u0301" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
        ),
    ],
    ids=[
        "trailing-space",
        "leading-space",
        "trailing-newline",
        "zero-width-space",
        "soft-hyphen",
        "no-break-space",
        "nfd",
    ],
)
def test_an_api_key_label_that_reads_as_another_is_refused_with_22S09(
    auth_db: psycopg.Connection, label: str, message: str
) -> None:
    user_id = make_user(auth_db, "alice", "trader")
    store_key(auth_db, user_id, label="main" if label != "cafe\u0301" else "caf\u00e9")

    with pytest.raises(psycopg.Error) as caught:
        store_key(auth_db, user_id, api_key="AKIA-binance-0002", label=label)

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
    assert auth_db.execute("select count(*) from auth.api_keys").fetchone() == (1,)


@pytest.mark.parametrize("label", ["\u4e1c\u4eac main", "caf\u00e9", "main key", "Main", "\U0001f680"])
def test_an_api_key_label_in_nfc_with_plain_spaces_is_stored_exactly(
    auth_db: psycopg.Connection, label: str
) -> None:
    user_id = make_user(auth_db, "alice", "trader")
    store_key(auth_db, user_id, label="main")

    key_id = store_key(auth_db, user_id, api_key="AKIA-binance-0002", label=label)

    stored = auth_db.execute("select label from auth.api_keys where key_id = %s", [key_id]).fetchone()[0]
    assert stored.encode() == label.encode()
