"""A recording fake of Twilio's Messages API, for behaviour tests and the SMS benchmark.

Implements ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (create) and
``GET /2010-04-01/Accounts/{sid}/Messages.json?To=…`` (list, newest first) well enough for the
real ``twilio`` client pointed at it with ``TWILIO_API_BASE``. Every POST is recorded; answers
can be scripted: errors for the next N requests or for given numbers, slow answers (the
message is still created — Twilio got it, the client just stopped waiting), and dropped
connections after the message was created.

Run alone (e.g. for a worker in another process): ``python tests/sms/fake_twilio.py [--port N]``
prints the base URL on stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

#: Credentials the tests use with the fake (and Prism, which only checks they are present).
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-token"

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})/Messages\.json$")

ERROR_MESSAGES = {
    20003: "Authentication Error - invalid username",
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


@dataclass
class RecordedRequest:
    """One POST as the fake saw it (before any scripted answer)."""

    account_sid: str
    to: str | None
    body: str | None
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    authorized: bool
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class _Rule:
    kind: str  # "error" | "delay" | "drop"
    status: int = 500
    code: int | None = None
    seconds: float = 0.0


class FakeTwilio:
    """Threaded HTTP server speaking enough Twilio; ``auth_token`` is checked on every call."""

    def __init__(self, auth_token: str = AUTH_TOKEN, host: str = "127.0.0.1", port: int = 0):
        self.auth_token = auth_token
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict] = []
        self._script: deque[_Rule] = deque()
        self._by_number: dict[str, _Rule] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a delayed answer must not hold up stop()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTwilio:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        """Answer the next ``n`` POSTs with HTTP ``status`` (and Twilio error ``code``)."""
        if code is None and status == 429:
            code = 20429
        with self._lock:
            self._script.extend(_Rule("error", status=status, code=code) for _ in range(n))

    def fail_number(self, to: str, status: int = 400, code: int = 21610) -> None:
        """Always refuse messages to ``to`` (e.g. 21211 invalid, 21610 unsubscribed)."""
        with self._lock:
            self._by_number[to] = _Rule("error", status=status, code=code)

    def delay_next(self, n: int = 1, seconds: float = 2.0) -> None:
        """Create the next ``n`` messages but answer only after ``seconds`` (client timeouts)."""
        with self._lock:
            self._script.extend(_Rule("delay", seconds=seconds) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        """Create the next ``n`` messages, then close the connection without answering."""
        with self._lock:
            self._script.extend(_Rule("drop") for _ in range(n))

    def reset(self) -> None:
        """Forget recorded requests, created messages and every scripted answer."""
        with self._lock:
            self.requests.clear()
            self.messages.clear()
            self._script.clear()
            self._by_number.clear()

    # -- inspection -------------------------------------------------------------------------
    def sent_to(self, to: str) -> list[dict]:
        """Messages created (accepted) for ``to``, oldest first."""
        with self._lock:
            return [m for m in self.messages if m["to"] == to]

    # -- the server -------------------------------------------------------------------------
    def _next_rule(self, to: str | None) -> _Rule | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            return self._by_number.get(to or "")

    def _create(self, account: str, form: dict[str, str]) -> dict:
        now = datetime.now(timezone.utc)
        sid = "SM" + secrets.token_hex(16)
        body = form.get("Body", "")
        message = {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": format_datetime(now, usegmt=True),
            "date_sent": None,
            "date_updated": format_datetime(now, usegmt=True),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if form.get("From") else "accepted",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        with self._lock:
            self.messages.append(message)
        return message

    def _authorized(self, header: str | None, account: str) -> bool:
        expected = base64.b64encode(f"{account}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
            # adds ~40 ms to every keep-alive request (the benchmark measured 19 msg/s instead of 270).
            disable_nagle_algorithm = True

            def log_message(self, format, *args):  # keep test output quiet
                pass

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: int | None, message: str | None = None) -> None:
                self._json(
                    status,
                    {
                        "code": code,
                        "message": message or ERROR_MESSAGES.get(code, f"HTTP {status}"),
                        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
                        "status": status,
                    },
                )

            def _route(self) -> str | None:
                match = MESSAGES_PATH.match(urlsplit(self.path).path)
                if not match:
                    self._error(404, 20404, "The requested resource was not found")
                    return None
                account = match["account"]
                if not fake._authorized(self.headers.get("Authorization"), account):
                    self._error(401, 20003)
                    return None
                return account

            def do_GET(self):
                account = self._route()
                if account is None:
                    return
                query = parse_qs(urlsplit(self.path).query)
                to = query.get("To", [None])[0]
                with fake._lock:
                    found = [
                        m
                        for m in reversed(fake.messages)
                        if m["account_sid"] == account and (to is None or m["to"] == to)
                    ]
                self._json(
                    200,
                    {
                        "messages": found,
                        "page": 0,
                        "page_size": len(found) or 50,
                        "first_page_uri": self.path,
                        "next_page_uri": None,
                        "previous_page_uri": None,
                        "uri": self.path,
                        "start": 0,
                        "end": max(len(found) - 1, 0),
                    },
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                match = MESSAGES_PATH.match(urlsplit(self.path).path)
                account = match["account"] if match else ""
                authorized = fake._authorized(self.headers.get("Authorization"), account)
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest(
                            account_sid=account,
                            to=form.get("To"),
                            body=form.get("Body"),
                            from_=form.get("From"),
                            messaging_service_sid=form.get("MessagingServiceSid"),
                            status_callback=form.get("StatusCallback"),
                            authorized=authorized,
                            form=form,
                        )
                    )
                if self._route() is None:
                    return
                if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
                    self._error(
                        400,
                        21604 if not form.get("To") else 21603,
                        "A 'To' and a 'From' or 'MessagingServiceSid' are required",
                    )
                    return
                rule = fake._next_rule(form.get("To"))
                if rule is not None and rule.kind == "error":
                    self._error(rule.status, rule.code)
                    return
                message = fake._create(account, form)
                if rule is not None and rule.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule is not None and rule.kind == "delay":
                    time.sleep(rule.seconds)
                try:
                    self._json(201, message)
                except OSError:
                    pass  # the client gave up waiting; the message exists all the same

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth-token", default=AUTH_TOKEN)
    args = parser.parse_args()
    fake = FakeTwilio(args.auth_token, args.host, args.port)
    print(fake.base_url, flush=True)
    fake._server.serve_forever()


if __name__ == "__main__":
    main()
