"""pipeline.mail against a real SMTP server (aiosmtpd), and the log fallback."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from pipeline.errors import ConfigError
from pipeline.mail import MailError, send_mail
from tests.support.servers import free_port


def test_message_reaches_the_smtp_server(settings, smtp_server):
    settings = dataclasses.replace(
        settings, smtp_url=smtp_server.url, mail_from="pipeline@example.org"
    )
    send_mail(settings, "owner@example.com", "run 7 failed", "Job: demo\nReason: exit 3\n")
    (message,) = smtp_server.wait_for(1)
    assert message["Subject"] == "run 7 failed"
    assert message["From"] == "pipeline@example.org"
    assert message["X-Envelope-To"] == "owner@example.com"
    assert "Reason: exit 3" in message.get_payload(decode=True).decode()


def test_without_smtp_url_the_message_is_logged(settings, caplog):
    assert settings.smtp_url is None
    with caplog.at_level(logging.INFO, logger="pipeline.mail"):
        send_mail(settings, "owner@example.com", "hello", "body text")
    assert "owner@example.com" in caplog.text and "body text" in caplog.text


def test_unreachable_server_raises_mail_error(settings):
    settings = dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(MailError, match="could not send mail to owner@example.com"):
        send_mail(settings, "owner@example.com", "s", "b", timeout=2)


def test_unknown_scheme_is_a_config_error(settings):
    settings = dataclasses.replace(settings, smtp_url="http://mail.example.org")
    with pytest.raises(ConfigError, match="TELEMETRY_SMTP_URL"):
        send_mail(settings, "owner@example.com", "s", "b")
