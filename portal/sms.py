"""The one door to Twilio: sending, delivery lookups and webhook signatures.

Why it works this way: docs/design-notes.md#the-twilio-door.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse
from urllib3.exceptions import NewConnectionError

__all__ = [
    "ACCOUNT_ERROR_CODES",
    "OPT_OUT_ERROR_CODE",
    "DryRunGateway",
    "SendResult",
    "SmsGateway",
    "SmsLookupError",
    "TwilioGateway",
    "compute_signature",
    "gateway_from_config",
    "twiml_message",
    "verify_signature",
]

log = logging.getLogger(__name__)

#: Twilio error code for "attempt to send to unsubscribed recipient": record an opt-out.
OPT_OUT_ERROR_CODE = 21610
#: Codes that say the account or sender is wrong, not the recipient: stop the campaign
#: instead of failing every recipient (auth error, account not active, invalid/foreign From).
ACCOUNT_ERROR_CODES = frozenset({20003, 20005, 21212, 21659})


@dataclass(frozen=True)
class SendResult:
    """What one send attempt did.

    ``status`` is Twilio's status on acceptance ("queued", "accepted", "scheduled"…),
    "dry-run" for the dry-run gateway, "failed" for a permanent rejection and
    "temporary-error" for a failure worth retrying.
    ``maybe_sent`` is True only when the request may have reached Twilio although we saw no
    answer (read timeout, connection lost mid-request): the engine must reconcile, not resend.
    ``account_error`` is True when the failure concerns the account/sender (bad credentials,
    invalid From), so every other recipient would fail the same way.
    """

    sid: str | None
    status: str
    error_code: int | None = None
    error_message: str | None = None
    retryable: bool = False
    dry_run: bool = False
    maybe_sent: bool = False
    http_status: int | None = None
    account_error: bool = False

    @property
    def accepted(self) -> bool:
        """True when Twilio (or the dry run) took the message and gave it a SID."""
        return self.sid is not None

    @property
    def opted_out(self) -> bool:
        """True when Twilio refused because the recipient replied STOP (record an opt-out)."""
        return self.error_code == OPT_OUT_ERROR_CODE


@runtime_checkable
class SmsGateway(Protocol):
    """Anything that can send one SMS and report the outcome without raising."""

    name: str

    def send(self, to: str, body: str, status_callback: str | None = None) -> SendResult:
        """Send ``body`` to the E.164 number ``to``; one attempt, never retried here."""
        ...

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """SID of a message with exactly ``body`` created for ``to`` at or after ``since``.

        The engine's answer to ``maybe_sent``: Twilio has no idempotency key, so before
        resending a row whose earlier attempt may have gone out, look for that attempt.
        Raises :class:`SmsLookupError` when the lookup itself fails (ask again later).
        """
        ...


class SmsLookupError(Exception):
    """Twilio could not be asked whether a message exists (retry the lookup later)."""


class DryRunGateway:
    """Sends nothing; answers like a successful send so the whole pipeline can run offline."""

    name = "dry-run"

    def __init__(self, reason: str = "no Twilio credentials configured") -> None:
        self.reason = reason  # shown in the pages' dry-run banner

    def send(self, to: str, body: str, status_callback: str | None = None) -> SendResult:
        """Return a dry-run result with a synthetic 34-character SID ('DRY' + 31 hex)."""
        return SendResult(sid="DRY" + secrets.token_hex(16)[:31], status="dry-run", dry_run=True)

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """Nothing ever leaves a dry run, so nothing is ever found."""
        return None


class TwilioGateway:
    """Sends through the official ``twilio`` client, one HTTP request per call.

    Args:
        account_sid, auth_token: the account's credentials.
        from_number / messaging_service_sid: the sender (at least one is required).
        api_base: e.g. ``http://127.0.0.1:4010`` to point the real client at a mock server
            (Prism, the test fake) instead of https://api.twilio.com.
        timeout: seconds for connecting and for waiting on the answer.
        edge, region: Twilio edge/region; ignored (forced off) when ``api_base`` is set.
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base: str | None = None,
        timeout: float = 10,
        edge: str | None = None,
        region: str | None = None,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("TwilioGateway needs from_number or messaging_service_sid")
        self.from_number = from_number or None
        self.messaging_service_sid = messaging_service_sid or None
        self.api_base = api_base.rstrip("/") if api_base else None
        http_client = TwilioHttpClient(timeout=timeout, max_retries=0)
        # No silent retries at any layer: a retried POST could create a second message.
        # max_retries=0 covers https://; mount the same for http:// (mock servers).
        http_client.session.mount("http://", HTTPAdapter(max_retries=0))
        self.client = Client(account_sid, auth_token, http_client=http_client)
        # The client reads TWILIO_EDGE/TWILIO_REGION from os.environ by itself; configuration
        # comes from our settings only, and an edge would rewrite a mock server's host name.
        self.client.edge = None if self.api_base else edge
        self.client.region = None if self.api_base else region
        if self.api_base:
            self.client.api.base_url = self.api_base

    def send(self, to: str, body: str, status_callback: str | None = None) -> SendResult:
        """Create one message via ``client.messages.create``; classify any failure."""
        kwargs: dict[str, str] = {"to": to, "body": body}
        if self.from_number:
            kwargs["from_"] = self.from_number
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            message = self.client.messages.create(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            return _classify_api_error(exc)
        except requests.exceptions.RequestException as exc:
            return _classify_transport_error(exc)
        except (TwilioException, ValueError) as exc:
            # E.g. a 2xx whose body is not JSON: Twilio probably created the message.
            return SendResult(None, "temporary-error", error_message=str(exc), retryable=True, maybe_sent=True)
        return SendResult(
            sid=message.sid,
            status=message.status or "queued",
            error_code=message.error_code,
            error_message=message.error_message,
        )

    def find_sent(self, to: str, body: str, since: datetime, limit: int = 50) -> str | None:
        """Search the newest ``limit`` messages to ``to`` for ``body`` created since ``since``.

        Filters on date_created (date_sent stays empty while a message is queued); ``since``
        should be the moment the row was claimed, minus a minute for clock skew.
        """
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        try:
            messages = self.client.messages.list(to=to, limit=limit)
        except (TwilioException, requests.exceptions.RequestException, ValueError) as exc:
            raise SmsLookupError(f"{type(exc).__name__}: {exc}") from exc
        for message in messages:
            created = message.date_created
            if message.body == body and (created is None or created >= since):
                return message.sid
        return None


def _classify_api_error(exc: TwilioRestException | TwilioServiceException) -> SendResult:
    """Twilio answered with an error: 429/5xx are temporary, other 4xx permanent."""
    status = int(exc.status) if exc.status is not None else None
    code = int(exc.code) if exc.code is not None else None
    message = getattr(exc, "msg", None) or getattr(exc, "title", None) or str(exc)
    retryable = status is not None and (status == 429 or status >= 500)
    return SendResult(
        sid=None,
        status="temporary-error" if retryable else "failed",
        error_code=code,
        error_message=message,
        retryable=retryable,
        # A 5xx may come from a proxy after Twilio created the message; only 429 is certain.
        maybe_sent=retryable and status != 429,
        http_status=status,
        account_error=not retryable and (status in (401, 403) or code in ACCOUNT_ERROR_CODES),
    )


def _classify_transport_error(exc: requests.exceptions.RequestException) -> SendResult:
    """No usable answer: always retryable; ``maybe_sent`` unless the request never left."""
    never_sent = isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError))
    if isinstance(exc, requests.exceptions.ConnectionError) and not never_sent:
        # Refused / DNS failure: no connection was made, so nothing was sent. A connection
        # dropped after the request went out (RemoteDisconnected, reset) may have sent it.
        # (urllib3's NameResolutionError is a NewConnectionError too.)
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        never_sent = isinstance(reason, NewConnectionError)
    return SendResult(
        sid=None,
        status="temporary-error",
        error_message=f"{type(exc).__name__}: {exc}",
        retryable=True,
        maybe_sent=not never_sent,
    )


def _present(config: Mapping, key: str) -> str | None:
    value = config.get(key)
    return str(value).strip() if value is not None and str(value).strip() else None


def gateway_from_config(config: Mapping) -> SmsGateway:
    """Twilio when TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and a sender are set, else dry-run.

    Reads TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, TWILIO_MESSAGING_SERVICE_SID,
    TWILIO_API_BASE and TWILIO_TIMEOUT (seconds) from ``config`` (Flask's app.config or any
    mapping); blank values count as missing.
    """
    sid, token = _present(config, "TWILIO_ACCOUNT_SID"), _present(config, "TWILIO_AUTH_TOKEN")
    sender = _present(config, "TWILIO_FROM")
    service = _present(config, "TWILIO_MESSAGING_SERVICE_SID")
    if not (sid and token):
        return DryRunGateway("no Twilio credentials configured")
    if not (sender or service):
        log.warning("Twilio credentials but no TWILIO_FROM/TWILIO_MESSAGING_SERVICE_SID: dry-run")
        return DryRunGateway("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID is not set")
    return TwilioGateway(
        sid,
        token,
        from_number=sender,
        messaging_service_sid=service,
        api_base=_present(config, "TWILIO_API_BASE"),
        timeout=float(_present(config, "TWILIO_TIMEOUT") or 10),
    )


# --- webhooks ------------------------------------------------------------------------------


def compute_signature(auth_token: str, url: str, params: Mapping) -> str:
    """The X-Twilio-Signature Twilio would send for a POST of ``params`` to ``url`` (for tests)."""
    return RequestValidator(auth_token).compute_signature(url, params)


def verify_signature(
    auth_token: str, url: str, params: Mapping, signature: str | None, settings_header: str | None = None
) -> bool:
    """True only when ``signature`` proves Twilio sent ``params`` to the public ``url``.

    ``url`` must be the URL Twilio called (PUBLIC_BASE_URL + path + query behind a proxy).
    ``settings_header`` is X-Twilio-Webhooks-Signature-Settings when present (picks SHA-256).
    A missing signature or token is never valid.
    """
    if not signature or not auth_token:
        return False
    algorithm = get_signature_algorithm(settings_header)
    return RequestValidator(auth_token).validate(url, params, signature, algorithm)


def twiml_message(text: str | None) -> str:
    """TwiML answering an inbound SMS with ``text`` (None: an empty <Response/>, no reply)."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)
