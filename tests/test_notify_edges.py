"""Edges of the notification worker and its settings: a message another worker is sending, and
settings values of the wrong kind, refused with an error that names the setting."""

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from notify_servers import HttpReceiver, queue, slack_worker
from spreadedge.settings import SettingsError, load_settings
from trading_helpers import call

SECRET = "s3cr3t-hmac-key-do-not-log"


def test_the_next_due_time_leaves_out_a_message_another_worker_is_sending(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: a worker that counted it would find it due at once, claim nothing (it is
    # locked), and loop without sleeping for as long as the other worker takes to send it
    queue(seeded, "slack")
    with psycopg.connect(seeded_url) as sender, slack_worker(seeded_url, http_receiver) as other:
        claimed = sender.execute(
            "select notification_id from monitor.claim_notifications(worker => 'a', channels => '{slack}')"
        ).fetchall()
        assert claimed == [(1,)]
        assert other.seconds_until_due(300.0) == 300.0
        assert other.run_once() == 0
        sender.rollback()
    # released (the sender died): due again at once
    with slack_worker(seeded_url, http_receiver) as other:
        assert other.seconds_until_due(300.0) == 0.0


def test_a_notify_setting_named_like_a_class_constant_is_refused_as_unknown(tmp_path: Path) -> None:
    (tmp_path / "spreadedge.toml").write_text('[notify]\nSECRETS = ["x"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "unknown [notify] setting(s): SECRETS"


def test_an_environment_variable_named_like_a_class_constant_is_no_setting(tmp_path: Path) -> None:
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_SECRETS": "x"})
    assert settings.notify.secrets() == []


@pytest.mark.parametrize("name", ["smtp_password", "webhook_secret"])
def test_a_secret_written_as_a_toml_number_is_refused_naming_the_setting_not_the_value(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "spreadedge.toml").write_text(f"[notify]\n{name} = 918273645\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == (
        f"[notify] {name} must be a string (quote it in the file); the value is not shown"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'email_to = ["ops@desk.test\\r\\nBcc: spy@evil.test"]',
            "email_to must be a list of email addresses, got 'ops@desk.test\\r\\nBcc: spy@evil.test'",
        ),
        (
            'email_to = ["ops@desk.test cto@desk.test"]',
            "email_to must be a list of email addresses, got 'ops@desk.test cto@desk.test'",
        ),
        (
            'email_from = "risk@desk.test\\nBcc: spy@evil.test"',
            "email_from must be an email address, got 'risk@desk.test\\nBcc: spy@evil.test'",
        ),
    ],
)
def test_an_email_address_that_cannot_be_sent_to_is_refused_naming_the_setting(
    tmp_path: Path, toml: str, message: str
) -> None:
    (tmp_path / "spreadedge.toml").write_text(f"[notify]\n{toml}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == message


def test_email_addresses_with_display_names_are_accepted(tmp_path: Path) -> None:
    env = {
        "SPREADEDGE_EMAIL_TO": "Ops Desk <ops@desk.test>, cto@desk.test",
        "SPREADEDGE_EMAIL_FROM": "Risk <r@desk.test>",
    }
    notify = load_settings(project_dir=tmp_path, env=env).notify
    assert (notify.email_to, notify.email_from) == (
        ("Ops Desk <ops@desk.test>", "cto@desk.test"),
        "Risk <r@desk.test>",
    )


def test_a_send_slower_than_the_databases_idle_in_transaction_timeout_is_delivered_once(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: the worker holds its claim's transaction open while it sends; a DBA's
    # idle_in_transaction_session_timeout would end the session after the send and before the
    # report, rolling back the attempt too: the message would be sent again and again, forever
    seeded.execute(
        sql.SQL("alter database {} set idle_in_transaction_session_timeout = '100ms'").format(
            sql.Identifier(seeded.info.dbname)
        )
    )
    queue(seeded, "slack")
    http_receiver.delay_s = 1.0  # ten times the timeout
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.drain() == 1
    assert len(http_receiver.requests) == 1
    assert seeded.execute("select status::text, attempts from monitor.notifications").fetchall() == [
        ("delivered", 1)
    ]


@pytest.mark.parametrize(
    ("notification_id", "message"),
    [
        (1, "notification 1 is not in the dead letter: it is pending"),
        (99, "notification 99 is not in the dead letter: there is no such notification"),
    ],
)
def test_requeueing_a_notification_outside_the_dead_letter_says_what_it_is_with_55S06(
    seeded: psycopg.Connection, notification_id: int, message: str
) -> None:
    queue(seeded, "slack")
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.requeue_notification", notification_id=notification_id)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("55S06", message)
