"""Exception classes for the project SQLSTATEs of ``ops.error_codes``.

The SQL functions raise these codes; :func:`translate` turns a psycopg error carrying one into the
matching :class:`SpreadedgeError` subclass, keeping the server's message, detail and hint. The
table ``ops.error_codes`` is the single source of the codes: a test asserts this module names
exactly the codes that table holds.
"""

from __future__ import annotations

import psycopg


class SpreadedgeError(Exception):
    """An error a caller caused, raised by a spreadedge SQL function with a project SQLSTATE."""

    sqlstate: str = ""

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint


def _define(name: str, sqlstate: str) -> type[SpreadedgeError]:
    class_name = "".join(part.capitalize() for part in name.split("_"))
    return type(
        class_name, (SpreadedgeError,), {"sqlstate": sqlstate, "__doc__": f"SQLSTATE {sqlstate} ({name})."}
    )


# name -> SQLSTATE, as in ops.error_codes
CODES: dict[str, str] = {
    "invalid_quantity": "22S01",
    "invalid_price": "22S02",
    "price_off_tick": "22S03",
    "quantity_off_lot": "22S04",
    "below_min_notional": "22S05",
    "invalid_side": "22S06",
    "invalid_order_type": "22S07",
    "unpriced_fee": "22S08",
    "invalid_argument": "22S09",
    "funding_not_applicable": "22S10",
    "weak_password": "22S11",
    "invalid_alert_rule": "22S12",
    "invalid_risk_limit": "22S13",
    "invalid_metric": "22S14",
    "invalid_spread_legs": "22S20",
    "unpriced_asset": "22S23",
    "unknown_exchange": "23S01",
    "unknown_instrument": "23S02",
    "unknown_strategy": "23S03",
    "unknown_order": "23S04",
    "overfill": "23S05",
    "conflicting_duplicate": "23S06",
    "unknown_user": "23S07",
    "duplicate_api_key": "23S08",
    "unknown_api_key": "23S09",
    "unknown_role": "23S10",
    "username_taken": "23S11",
    "unknown_metric": "23S12",
    "unknown_alert_rule": "23S13",
    "unknown_alert": "23S14",
    "alert_rule_exists": "23S15",
    "invalid_credentials": "28S01",
    "invalid_session": "28S02",
    "wrong_master_key": "28S03",
    "permission_denied": "42S01",
    "unknown_pair": "23S20",
    "illegal_state_transition": "55S01",
    "append_only": "55S02",
    "totp_state": "55S03",
    "user_disabled": "55S04",
    "instrument_in_use": "55S07",
    # operations (issue 7)
    "invalid_cleanup_target": "22S21",
    "invalid_index_candidate": "22S22",
    "unknown_backup_run": "23S21",
    "backup_run_finished": "55S10",
    "partition_not_managed": "55S11",
    "partition_maintenance_failed": "55S12",
    "alert_resolved": "55S05",
    "notification_state": "55S06",
}

BY_SQLSTATE: dict[str, type[SpreadedgeError]] = {code: _define(name, code) for name, code in CODES.items()}
BY_NAME: dict[str, type[SpreadedgeError]] = {name: BY_SQLSTATE[code] for name, code in CODES.items()}


def translate(error: psycopg.Error) -> Exception:
    """The SpreadedgeError subclass for a psycopg error with a project SQLSTATE, else the error itself."""
    cls = BY_SQLSTATE.get(error.sqlstate or "")
    if cls is None:
        return error
    diag = error.diag
    translated = cls(diag.message_primary or str(error), detail=diag.message_detail, hint=diag.message_hint)
    translated.__cause__ = error
    return translated


globals().update({cls.__name__: cls for cls in BY_SQLSTATE.values()})
__all__ = [
    "BY_NAME",
    "BY_SQLSTATE",
    "CODES",
    "SpreadedgeError",
    "translate",
    *(c.__name__ for c in BY_SQLSTATE.values()),
]
