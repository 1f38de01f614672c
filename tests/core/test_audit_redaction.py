"""What of a request body reaches the audit log: secrets never, and a bounded amount of the rest."""

from __future__ import annotations

from server.core.audit import REDACTED, redact


def test_secret_fields_are_redacted_at_any_depth():
    body = {
        "name": "olga",
        "password": "hunter2hunter2",
        "nested": {"totp": "123456", "api_token": "dso_x", "private_key": "-----BEGIN", "role": "admin"},
        "items": [{"secret": "s", "value": 1}],
    }
    assert redact(body) == {
        "name": "olga",
        "password": REDACTED,
        "nested": {"totp": REDACTED, "api_token": REDACTED, "private_key": REDACTED, "role": "admin"},
        "items": [{"secret": REDACTED, "value": 1}],
    }


def test_large_bodies_are_summarised():
    shown = redact({"readings": list(range(5000)), "note": "x" * 5000, **{f"f{i}": i for i in range(100)}})
    assert shown["readings"] == "[5000 items]"
    assert shown["note"].endswith("(5000 characters)") and len(shown["note"]) < 300
    assert len(shown) == 51 and shown["..."] == "52 more fields"
