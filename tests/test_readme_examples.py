"""The README's examples work as shown: its SQL API table, its error table and its SQL examples,
read from README.md itself and held against the catalog and a database with the demo day."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from db_fixtures import PROJECT, janitor
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.demo import run_demo

README = (PROJECT / "README.md").read_text(encoding="utf-8")
SCHEMAS = ("ref", "trading", "market", "auth", "monitor", "audit", "ops")

# the input arguments of every function, in order, per overload
_ARGUMENTS = """
    select n.nspname || '.' || p.proname,
           array(select a.name
                 from unnest(coalesce(p.proargnames, '{}'),
                             coalesce(p.proargmodes, array_fill('i'::"char", array[cardinality(p.proargnames)])))
                      with ordinality a(name, mode, i)
                 where a.mode in ('i', 'b', 'v')
                 order by a.i)
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any(%s) and p.proargnames is not null
    union all
    select n.nspname || '.' || p.proname, '{}'
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any(%s) and p.proargnames is null
"""


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language, the heading it is under and its text."""

    lang: str
    heading: str
    text: str


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    heading, lang, body = "", None, []
    for line in README.splitlines():
        if lang is None and line.startswith("#"):
            heading = line
        elif line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append(Block(lang, heading, "\n".join(body)))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def sql_block(heading: str) -> str:
    found = [b.text for b in readme_blocks() if b.lang == "sql" and b.heading == heading]
    assert len(found) == 1, f"the README has {len(found)} sql blocks under {heading!r}"
    return found[0]


def section(heading: str) -> str:
    """The README's text under a heading, to the next heading of its level or above."""
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    level = len(heading.split(" ")[0])
    end = re.search(rf"^#{{1,{level}}} ", README[start:], re.M)
    return README[start : start + end.start()] if end else README[start:]


def statements(text: str) -> list[str]:
    """The statements of a psql script: `--` comments dropped, split at `;` or `\\gset` outside
    quotes; a line of a psql meta-command alone (`\\dn`) is left out."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("\\"))
    out, current, quoted, i = [], "", False, 0
    while i < len(text):
        if not quoted and text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        if text[i] == "'":
            quoted = not quoted
        if not quoted and text[i] == ";":
            out.append(current.strip())
            current = ""
        elif not quoted and text.startswith("\\gset", i):
            out.append(current.strip() + " \\gset")
            current, i = "", i + len("\\gset")
            continue
        else:
            current += text[i]
        i += 1
    if current.strip():
        out.append(current.strip())
    return out


def catalog_arguments(conn: psycopg.Connection) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for name, arguments in conn.execute(_ARGUMENTS, [list(SCHEMAS)] * 2):
        found.setdefault(name, []).append(list(arguments))
    return found


def written_signatures(text: str) -> Iterator[tuple[str, list[str], bool]]:
    """Each `schema.function(...)` the text writes: its name, the argument names it gives and
    whether by name (`name => value`); a list holding anything but names (`...`, a value) gives
    none."""
    for schema, names, arguments in re.findall(r"\b([a-z]+)\.([a-z_|]+)\(([^()]*)\)", text):
        if schema not in SCHEMAS:
            continue
        named = re.findall(r"(\w+)\s*=>", arguments)
        bare = [a.strip() for a in arguments.split(",") if a.strip()]
        given = named or (bare if all(re.fullmatch(r"[a-z_]+", a) for a in bare) else [])
        # why: `market.load_staged_quotes|ticks|candles(p_strict)` writes three functions
        first, *others = names.split("|")
        stem = first.rsplit("_", 1)[0] + "_" if others else ""
        for name in [first, *(stem + other for other in others)]:
            yield f"{schema}.{name}", given, bool(named)


@pytest.fixture(scope="module")
def demo_url(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    """One database with the demo day (120 orders) for the whole module: the examples run in the
    README's order, as a reader who ran `make run` would run them."""
    with janitor(pg_cluster, "readme_examples", template_db):
        url = pg_cluster.url("readme_examples")
        with psycopg.connect(url, autocommit=True) as conn:
            run_demo(conn, orders=120)
            # why: the Security examples create users and log in; bcrypt at cost 12 takes seconds
            conn.execute("select auth.set_security_policy(bcrypt_cost => 4)")
        yield url


@pytest.fixture(scope="module")
def demo(demo_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(demo_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def arguments(demo: psycopg.Connection) -> dict[str, list[list[str]]]:
    return catalog_arguments(demo)


def test_the_sql_api_table_gives_each_functions_argument_names_in_order(arguments):
    rows = [line for line in section("## The SQL API").splitlines() if line.startswith("| `")]
    written = [sig for row in rows for sig in written_signatures(row.split(" | ")[0])]
    # why these: the names applications call, which the product fixes
    assert {name for name, _, _ in written} >= {
        "ref.upsert_instrument",
        "trading.create_strategy",
        "trading.place_order",
        "trading.cancel_order",
        "trading.record_fill",
        "trading.record_funding",
        "trading.get_position",
        "trading.pnl_summary",
    }
    wrong = [
        (name, given, arguments.get(name))
        for name, given, _ in written
        if given not in arguments.get(name, [])
    ]
    assert wrong == []


def test_every_function_the_readme_writes_out_exists_with_those_argument_names(arguments):
    # why exact for a list of names: `market.stage_rows(kind)` led a reader to `kind =>`, which
    # PostgreSQL refuses (the argument is p_kind)
    wrong = [
        (name, given, arguments.get(name))
        for name, given, by_name in written_signatures(README)
        if name not in arguments
        or (given and not by_name and given not in arguments[name])
        or (by_name and not any(set(given) <= set(overload) for overload in arguments[name]))
    ]
    assert wrong == []


def test_every_function_an_application_may_call_is_named_in_the_readme(demo):
    callable_by_app = demo.execute(
        """
        select n.nspname || '.' || p.proname
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%s) and has_function_privilege('spreadedge_app', p.oid, 'execute')
          and not exists (select from pg_depend d where d.objid = p.oid and d.deptype = 'e')
        """,
        [list(SCHEMAS)],
    ).fetchall()
    named = {name for name, _, _ in written_signatures(README)} | set(
        re.findall(r"\b[a-z]+\.[a-z_]+\b", README)
    )
    # why the short name too: a list of one schema's functions qualifies only its first
    # (`trading.order_history_page`, `order_detail`, ...)
    missing = sorted(
        name
        for (name,) in callable_by_app
        if name not in named
        and f"`{name.split('.')[1]}`" not in README
        and f"`{name.split('.')[1]}(" not in README
    )
    assert missing == [], missing


def test_the_error_table_is_ops_error_codes(demo):
    table = re.findall(r"^\| (\w{5}) \| (\w+) \| (.+) \|$", section("## Errors"), re.M)
    assert len(table) == len({code for code, _, _ in table})
    assert (
        sorted((code, name) for code, name, _ in table)
        == demo.execute("select sqlstate, name from ops.error_codes order by sqlstate").fetchall()
    )


# What each example does in the demo day's database where it is not simply success: the
# README's own placeholders (alert 17, TOTP code 123456) are refused by value, which proves their
# argument names were taken (a wrong one is 42883).
EXPECTED_ERRORS = {
    "monitor.acknowledge_alert(alert_id => 17": {"23S14"},
    "auth.confirm_totp(": {"28S01"},
}
# psql's `$n` parameters of the Security examples, by the function they call
SECRETS = {
    "password": "Correct-Horse-9-battery",
    "totp_code": None,
    "api_key": "readme-api-key",
    "api_secret": "readme-api-secret",
    "passphrase": "readme-passphrase",
    "master_key": "readme-master-key-0123456789abcdef",
}


def _parameters(statement: str, values: dict[str, Any]) -> list[Any]:
    """The values of a statement's `$n` parameters, by the names of the arguments they are given to."""
    by_number = {int(number): argument for argument, number in re.findall(r"(\w+) => \$(\d+)", statement)}
    return [values[by_number[number]] for number in sorted(by_number)]


def run_examples(conn: psycopg.Connection, heading: str, variables: dict[str, Any]) -> list[str]:
    """Run the sql block under the heading statement by statement; the problems found."""
    problems = []
    for statement in statements(sql_block(heading)):
        if statement.startswith("select cron."):  # pg_cron's database only, not a test database
            continue
        gset = statement.endswith("\\gset")
        # psql's :name, of a value an earlier statement's \gset kept
        text = re.sub(
            r"(?<![:\w]):(\w+)",
            lambda m: str(variables[m[1]]) if m[1] in variables else m[0],
            statement.removesuffix("\\gset"),
        )
        expected = next((codes for key, codes in EXPECTED_ERRORS.items() if key in text), set())
        try:
            with psycopg.RawCursor(conn) as cur:
                cur.execute(text, _parameters(text, variables) or None)
                row = cur.fetchone() if cur.description else None
                if gset and row is not None and cur.description:
                    variables.update(zip([d.name for d in cur.description], row, strict=True))
                columns = [d.name for d in cur.description or []]
                if row is not None and "session_token" in columns:  # auth.login's, for the next calls
                    variables["token"] = row[columns.index("session_token")]
        except psycopg.Error as exc:
            if exc.sqlstate not in expected:
                problems.append(f"{' '.join(text.split())[:120]}: {exc.sqlstate} {exc}")
            continue
        if expected:
            problems.append(f"{' '.join(text.split())[:120]}: succeeded, expected {expected}")
    return problems


# the sections whose sql examples run, in the README's order (later ones use btc-arb, which the
# SQL API's examples create)
EXAMPLES = [
    "## Looking at the data",
    "## The SQL API",
    "### Candles",
    "### Indicators",
    "### Spreads",
    "### Spread trades",
    "## Monitoring, alerts, notifications and risk limits",
    "## Security",
    "### Tuning",
]
_ran: dict[str, list[str]] = {}


def run_through(conn: psycopg.Connection, heading: str) -> list[str]:
    variables: dict[str, Any] = dict(SECRETS)
    for earlier in EXAMPLES[: EXAMPLES.index(heading) + 1]:
        if earlier not in _ran:
            _ran[earlier] = run_examples(conn, earlier, variables)
    return _ran[heading]


@pytest.mark.parametrize("heading", EXAMPLES)
def test_the_sql_examples_run_as_shown_on_the_demo_day(demo, heading):
    assert run_through(demo, heading) == []


def test_the_sql_api_examples_place_fill_and_cancel_the_order_they_placed(demo):
    run_through(demo, "## The SQL API")
    order = demo.execute(
        "select status, filled_quantity, exchange_order_id from trading.orders where client_order_id = 'arb-1'"
    ).fetchall()
    assert [(status, str(filled), exchange_id) for status, filled, exchange_id in order] == [
        ("cancelled", "0.2", "BN-991")
    ]
    # the fee of 0.0002 BTC is taken from the 0.2 BTC bought, and the mark given is the one used
    position = demo.execute(
        "select quantity, mark from trading.get_position(strategy => 'btc-arb', exchange => 'binance',"
        " symbol => 'BTCUSDT', mark_price => 67100)"
    ).fetchone()
    assert position is not None
    assert (str(position[0]), str(position[1])) == ("0.1998", "67100")


def test_the_monitoring_cli_examples_run_as_shown(demo_url, demo):
    run_through(demo, "## Monitoring, alerts, notifications and risk limits")
    (block,) = [
        b.text
        for b in readme_blocks()
        if b.lang == "sh" and b.heading == "## Monitoring, alerts, notifications and risk limits"
    ]
    failed = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # a variable set for the command
            words.pop(0)
        # the worker serves until stopped, and alert 17 is the README's placeholder
        if not words or words[1:3] in (["notify", "worker"], ["alerts", "ack"]):
            continue
        assert words[0] == ".venv/bin/spreadedge", line
        result = CliRunner().invoke(main, ["--database-url", demo_url, *words[1:]])
        if result.exit_code != 0:
            failed.append((line, result.output))
    assert failed == []
