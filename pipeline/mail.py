"""Sending email: SMTP when `TELEMETRY_SMTP_URL` is set, otherwise the message goes to the log.

URL forms:
  smtp://host:port                plain SMTP (port 25 by default)
  smtp+starttls://user:pass@host:port   SMTP upgraded with STARTTLS (port 587 by default)
  smtps://user:pass@host:port     SMTP over TLS (port 465 by default)
User and password are percent-decoded. Transient connection failures are retried a few times
(tenacity); a message the server refuses raises MailError at once.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlparse

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.errors import ConfigError, MailError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TRANSIENT = (
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    ConnectionError,
    TimeoutError,
)


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def _parse(url: str):
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS:
        raise ConfigError(
            "TELEMETRY_SMTP_URL",
            f"unsupported scheme in {url!r}: use smtp://, smtp+starttls:// or smtps://",
        )
    if not parsed.hostname:
        raise ConfigError("TELEMETRY_SMTP_URL", f"{url!r} names no host")
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError as exc:
        raise ConfigError("TELEMETRY_SMTP_URL", f"bad port in {url!r}") from exc
    user = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    return parsed.scheme, parsed.hostname, port, user, password


@retry(
    retry=retry_if_exception_type(TRANSIENT),
    stop=stop_after_attempt(3),
    wait=wait_exponential(0.2, max=2),
    reraise=True,
)
def _deliver(url: str, message: EmailMessage, timeout: float) -> None:
    scheme, host, port, user, password = _parse(url)
    if scheme == "smtps":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if scheme == "smtp+starttls":
            client.starttls(context=ssl.create_default_context())
        if user:
            client.login(user, password or "")
        client.send_message(message)


def send_mail(settings, to: str, subject: str, body: str, *, timeout: float = 30.0) -> None:
    """Send one plain-text message from `settings.mail_from` to `to`."""
    message = build_message(settings.mail_from, to, subject, body)
    if not settings.smtp_url:
        log.info(
            "mail (TELEMETRY_SMTP_URL unset, not sent) to=%s subject=%s\n%s", to, subject, body
        )
        return
    try:
        _deliver(settings.smtp_url, message, timeout)
    except ConfigError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(
            f"could not send mail to {to} via {urlparse(settings.smtp_url).hostname}: {exc}"
        ) from exc
    log.info("mail sent to=%s subject=%s", to, subject)
