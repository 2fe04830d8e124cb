"""The only door to SMTP (Flask-Mailman). Without MAIL_SERVER nothing leaves: the mail is logged.

``Connection.send`` tells the outbox what an attempt did, so it can decide between sent, retry
(certainly not sent: no connection, a temporary 4xx refusal), failed (a permanent 5xx refusal) and
unknown (the connection broke after the message was handed over: it may have arrived).
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass

from flask import current_app
from flask_mailman import EmailMultiAlternatives
from flask_mailman.backends.smtp import EmailBackend

TIMEOUT_SECONDS = 30


@dataclass
class Outcome:
    """What one attempt did: status sent | logged | retry | failed | unknown, and why."""

    status: str
    error: str | None = None


def configured() -> bool:
    """True when MAIL_SERVER is set (mail is sent); False: mail is written to the outbox log only."""
    return bool(current_app.config.get("MAIL_SERVER"))


def sender() -> str:
    """MAIL_FROM, else a no-reply address on the portal's host."""
    return current_app.config.get("MAIL_FROM") or "Loyalist <no-reply@localhost>"


class Connection:
    """One SMTP connection for a batch of mails (``with Connection() as conn: conn.send(...)``)."""

    def __init__(self) -> None:
        config = current_app.config
        self.live = configured()
        self.backend: EmailBackend | None = None
        self.open_error: str | None = None
        if self.live:
            self.backend = EmailBackend(
                host=config["MAIL_SERVER"],
                port=int(config.get("MAIL_PORT") or 25),
                username=config.get("MAIL_USERNAME") or "",
                password=config.get("MAIL_PASSWORD") or "",
                use_tls=bool(config.get("MAIL_USE_TLS")),
                use_ssl=False,
                timeout=TIMEOUT_SECONDS,
            )

    def __enter__(self) -> Connection:
        if self.backend is not None:
            try:
                self.backend.open()
            except (OSError, smtplib.SMTPException) as exc:  # refused, unknown host, TLS or login refused
                self.open_error = f"could not connect to {current_app.config['MAIL_SERVER']}: {_describe(exc)}"
        return self

    def __exit__(self, *exc) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # closing a broken connection: nothing to save
                pass

    def send(self, to: str, subject: str, text: str, html: str, headers: dict[str, str], message_id: str) -> Outcome:
        """Send one mail with a plain-text and an HTML part; without MAIL_SERVER, log it (status 'logged')."""
        if not self.live:
            return Outcome("logged")
        if self.open_error:
            return Outcome("retry", self.open_error)
        message = EmailMultiAlternatives(
            subject=subject,
            body=text,
            from_email=sender(),
            to=[to],
            headers={**headers, "Message-ID": message_id},
            connection=self.backend,
        )
        message.attach_alternative(html, "text/html")
        message.encoding = "utf-8"
        try:
            message.message()  # build it first: a mail that cannot be built was certainly not sent
        except Exception as exc:
            return Outcome("failed", f"could not be built: {_describe(exc)}")
        try:
            accepted = self.backend.send_messages([message])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            status = "retry" if codes and all(400 <= c < 500 for c in codes) else "failed"
            return Outcome(status, f"recipient refused: {_describe(exc)}")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            status = "retry" if 400 <= exc.smtp_code < 500 else "failed"
            return Outcome(status, f"refused by the server: {_describe(exc)}")
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError, smtplib.SMTPException) as exc:
            # The message may have been handed over before the connection broke: never re-sent by itself.
            self.open_error = f"connection lost: {_describe(exc)}"
            return Outcome("unknown", f"the connection broke while sending ({_describe(exc)}); it may have arrived")
        if not accepted:
            return Outcome("unknown", "the SMTP backend reported nothing sent")
        return Outcome("sent")


def _describe(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {str(exc)[:300]}"
