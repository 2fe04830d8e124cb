"""A real SMTP server for the mail tests (aiosmtpd on a free port), and the app pointed at it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading

import pytest
from aiosmtpd.controller import Controller


class Inbox:
    """aiosmtpd handler that keeps every message it accepts, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Event()
        self.hold_seconds = 0.0  # answer DATA this late (a test kills the sender meanwhile)

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        self.arrived.set()
        if self.hold_seconds:
            await asyncio.sleep(self.hold_seconds)
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.messages if address in str(m["To"])]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def smtp(app):
    """An SMTP server started for the test; the app sends to it (MAIL_SERVER/MAIL_PORT) and stops after."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {k: app.config.get(k) for k in ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_FROM")}
    app.config.update(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False, MAIL_FROM="Loyalist <alerts@shop.example>"
    )
    try:
        yield inbox
    finally:
        controller.stop()
        app.config.update(saved)


def parts(message) -> dict[str, str]:
    """The message's text parts by content type."""
    return {
        part.get_content_type(): part.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
        for part in message.walk()
        if part.get_content_type() in ("text/plain", "text/html")
    }


def subject(message) -> str:
    """The Subject as a mail client shows it (a long or encoded header is folded onto a new line)."""
    return str(message["Subject"]).strip()
