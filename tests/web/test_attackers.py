"""Attackers: every route x every role gets the status it should, and random form data never gives a 500.

Ids in URLs are real rows of store A (a customer, a campaign, an import, a saved segment), so the
matrix checks the access rules rather than "not found".
"""

import random
import re
from collections import Counter

import pytest
from flask import g

from portal.models import Campaign, ImportRun, SavedSegment
from tests.conftest import csrf_token, login

PUBLIC = {
    "/login",
    "/healthz",
    "/readyz",
    "/sms/inbound",
    "/sms/status",
    "/mail/unsubscribe/not-a-signed-link",
    "/api/v1/docs",  # the API's reference and OpenAPI document: no data in them
    "/api/v1/openapi.json",
}
WEBHOOKS = {"/sms/inbound", "/sms/status"}
ADMIN_ONLY_PREFIXES = ("/users", "/stores", "/settings", "/audit", "/admin/")
ROLES = ("anonymous", "marketer", "manager_a", "manager_b", "admin")
ACCEPTED = {200, 302, 400, 403, 404, 405, 409, 413, 422, 429}
LOGIN_ACCEPTED = ACCEPTED | {401}  # a failed login answers 401 with the form again
EXAMPLES_PER_ROUTE = 3
SEED = 20261122


@pytest.fixture()
def world(db, make_store, make_user, make_customer):
    """Two stores, one user per role, and one row of store A behind every ``<int:...>`` route."""
    a, b = make_store("Store A"), make_store("Store B")
    users = {
        "marketer": make_user("marketer"),
        "manager_a": make_user("manager", email="manager-a@example.com", store=a),
        "manager_b": make_user("manager", email="manager-b@example.com", store=b),
        "admin": make_user("admin"),
    }
    victim = make_user("marketer", email="victim@example.com")  # the target of /users/<id> posts
    customer_a, customer_b = make_customer(store=a, sms_consent="opted_in"), make_customer(store=b)
    campaign = Campaign(name="Spring A", store_id=a.id, template="Hi {first_name}", status="draft")
    run = ImportRun(kind="transactions", filename="a.csv", store_id=a.id, status="done", user_email="x@example.com")
    segment = SavedSegment(name="Mine", query="tier=Gold", owner_email=users["marketer"].email)
    db.session.add_all([campaign, run, segment])
    db.session.commit()
    ids = {
        "customer_id": customer_a.id,
        "campaign_id": campaign.id,
        "import_id": run.id,
        "store_id": a.id,
        "user_id": victim.id,
        "segment_id": segment.id,
        "job_id": "no-such-job",
        "list_name": "customers",
        "name": "no-such-name",
        "filename": "x",
        "token": "not-a-signed-link",  # an unsubscribe link whose signature is wrong: refused (400)
        "token_id": 999_999,
        "endpoint_id": 999_999,
        "flow_id": 999_999,
        "code": "NO-SUCH-CODE",
    }
    return {
        "users": users,
        "ids": ids,
        "customer_a": customer_a,
        "customer_b": customer_b,
        "campaign": campaign,
        "store_a": a,
    }


class RoleClient:
    """A test client that forgets the previous request's user before each request.

    The ``app`` fixture keeps one application context open for the whole test, so per-context caches
    in ``g`` (Flask-Login's user, Flask-WTF's CSRF token) would leak from one client's request into
    the next; a browser never shares them.
    """

    def __init__(self, app):
        self._client = app.test_client()

    def open(self, *args, **kwargs):
        vars(g).clear()
        response = self._client.open(*args, **kwargs)
        response.get_data()  # drain streamed bodies (CSV exports) so their request context ends here
        response.close()
        return response

    def get(self, *args, **kwargs):
        return self.open(*args, method="GET", **kwargs)

    def post(self, *args, **kwargs):
        return self.open(*args, method="POST", **kwargs)


@pytest.fixture()
def clients(app, world):
    """One logged-in test client per role (CSRF on), plus an anonymous one."""
    out = {"anonymous": RoleClient(app)}
    for role, user in world["users"].items():
        out[role] = RoleClient(app)
        assert login(out[role], user.email).status_code == 302
    return out


def _fill(rule, ids) -> str:
    url = rule.rule
    for arg in rule.arguments:
        url = re.sub(r"<(?:\w+:)?%s>" % arg, str(ids[arg]), url)
    return url


def _rules(app, method):
    return sorted(
        (r for r in app.url_map.iter_rules() if method in r.methods and r.endpoint != "static"), key=lambda r: r.rule
    )


def _expected_get(url: str, role: str, world) -> set[int]:
    """The statuses a role may get on a GET of ``url`` (a set: some pages redirect by design)."""
    if url == "/login" and role != "anonymous":
        return {200, 302}  # already logged in: sent on to the dashboard
    if url.startswith("/mail/unsubscribe/"):
        return {400}  # public, but this link's signature is not valid
    if url in PUBLIC:
        return {200, 405}
    if url.startswith("/api/"):
        return {401}  # a bearer token or nothing: the API never takes the login cookie
    if role == "anonymous":
        return {302}
    if url.startswith(ADMIN_ONLY_PREFIXES):
        return {200} if role == "admin" else {403}
    if url == f"/customers/{world['customer_a'].id}" and role == "manager_b":
        return {404}
    if url == f"/customers/{world['customer_a'].id}" and role in ("manager_a", "admin", "marketer"):
        return {200}
    # Everything else: reachable or refused, never a crash and never a login bounce for a logged-in user.
    return {200, 302, 400, 403, 404}


def test_access_matrix_every_get_route_by_every_role(app, world, clients):
    cells = Counter()
    for rule in _rules(app, "GET"):
        url = _fill(rule, world["ids"])
        for role in ROLES:
            response = clients[role].get(url)
            status = response.status_code
            cells[role] += 1
            assert status in _expected_get(url, role, world), (role, url, status)
            if role == "anonymous" and url not in PUBLIC and not url.startswith("/api/"):
                assert "/login" in response.headers["Location"], (url, response.headers["Location"])
            if role != "anonymous" and status == 302:
                assert "/login" not in response.headers["Location"], (role, url)
    assert len(set(cells.values())) == 1 and cells["admin"] > 30  # every route was tried by every role


def test_manager_cannot_reach_another_stores_customer_by_guessing_ids(world, clients):
    other = world["customer_a"].id
    manager_b = clients["manager_b"]
    assert manager_b.get(f"/customers/{other}").status_code == 404
    token = csrf_token(manager_b, "/customers")
    posted = manager_b.post(f"/customers/{other}", data={"status": "opted_out", "csrf_token": token})
    assert posted.status_code == 404
    for guess in range(other + 1, other + 50):  # ids nearby are someone else's or nobody's
        assert manager_b.get(f"/customers/{guess}").status_code in (200, 404)
    listing = manager_b.get("/customers").get_data(as_text=True)
    assert world["customer_a"].external_id not in listing and world["customer_b"].external_id in listing


def test_marketer_cannot_send_a_campaign_nor_change_settings(world, clients, db):
    marketer = clients["marketer"]
    token = csrf_token(marketer, "/campaigns")
    campaign_id = world["campaign"].id
    assert marketer.post(f"/campaigns/{campaign_id}/send", data={"csrf_token": token}).status_code == 403
    assert marketer.post("/settings", data={"csrf_token": token, "sms.frequency_cap_days": "0"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(Campaign, campaign_id).status == "draft"


# --- fuzz: random form data on every POST route as every role ----------------------------------------

FIELD_POOL = (
    "name",
    "email",
    "password",
    "new_password",
    "confirm",
    "role",
    "store_id",
    "store",
    "status",
    "effective",
    "source",
    "code",
    "customer_id",
    "template",
    "audience",
    "control_share",
    "query",
    "scheduled_for",
    "expires_at",
    "timezone",
    "currency",
    "phone_region",
    "contact_line",
    "next",
    "sender_name",
    "active",
    "kind",
    "layout",
    "file",
    "columns",
    "list_name",
    "q",
    "value",
)


def _random_value(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return ""
    if kind == 1:
        return str(-rng.randrange(1, 10 ** rng.randrange(1, 30)))
    if kind == 2:
        return rng.choice(["1e308", "-1e308", "NaN", "inf", "-0", "0x10", "99999999999999999999999999"])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 4:
        return rng.choice("aé€😀\u202e") * rng.randrange(1_000, 30_000)  # huge field
    if kind == 5:
        return rng.choice(["2026-13-45", "0000-00-00", "31/02/2026", "9999-12-31T99:99", "yesterday"])
    if kind == 6:
        return rng.choice(
            [
                "<script>alert(1)</script>",
                "' OR 1=1 --",
                "=HYPERLINK(\"http://x\")",
                "../../etc/passwd",
                "//evil.example",
                "https://evil.example/",
                "{{7*7}}",
                "{first_name}{",
            ]
        )
    if kind == 7:
        return "a\x00b" + "\x00" * rng.randrange(3)  # NUL bytes (PostgreSQL refuses them in text)
    if kind == 8:
        return rng.choice(["opted_in", "opted_out", "admin", "manager", "marketer", "y", "on", "true", "1"])
    if kind == 9:
        return str(rng.randrange(0, 10**6))
    if kind == 10:
        return "\r\n".join("x" * rng.randrange(0, 5) for _ in range(rng.randrange(1, 50)))
    return "".join(rng.choice("abc123 -_.,;:%&?#") for _ in range(rng.randrange(1, 30)))


def _form_fields(client, url: str) -> list[str]:
    """The field names the page for ``url`` shows (for a POST-only route: none), so fuzz hits real fields."""
    try:
        html = client.get(url).get_data(as_text=True)
    except Exception:  # noqa: BLE001 - a GET crash is the matrix test's business
        return []
    return sorted(set(re.findall(r'name="([^"]+)"', html)) - {"csrf_token"})


def _random_form(rng: random.Random, fields: list[str]) -> dict:
    names = [f for f in fields if rng.random() < 0.8]  # some fields missing
    names += rng.sample(FIELD_POOL, rng.randrange(0, 5))
    if rng.random() < 0.2:
        names.append("".join(chr(rng.randrange(0x21, 0x3000)) for _ in range(rng.randrange(1, 12))))
    form = {}
    for name in names:
        if rng.random() < 0.15:
            form[name] = [_random_value(rng) for _ in range(rng.randrange(2, 4))]  # repeated field
        else:
            form[name] = _random_value(rng)
    return form


# Values that broke parsers before: out-of-range integers (SQLite/C overflow), a digit str.isdigit()
# accepts but int() refuses, NUL bytes, a timestamp far beyond datetime's range.
EXTREMES = ("99999999999999999999999999", "²", "١٢٣", "a\x00b", "-1", "9" * 400, "9999-12-31T23:59:59")


def _post_routes(app, ids) -> list[str]:
    return sorted({_fill(rule, ids) for rule in _rules(app, "POST")})


def test_fuzz_every_post_route_as_every_role_never_500(app, db, world, clients):
    rng = random.Random(SEED)
    ids = world["ids"]
    routes = [u for u in _post_routes(app, ids) if u not in WEBHOOKS and u not in ("/logout", "/login")]
    # Logged-in roles first (their tokens come from their own session), the anonymous client last.
    tried = Counter()
    failures = []
    for role in ROLES:
        client = clients[role]
        token = csrf_token(client, "/account/password" if role != "anonymous" else "/login")
        for url in routes + (["/login"] if role == "anonymous" else []):
            fields = _form_fields(client, url)
            api = url.startswith("/api/")  # the API answers 401 to every form and cookie: it takes a bearer token
            accepted = {401} if api else LOGIN_ACCEPTED if url == "/login" else ACCEPTED
            forms = [_random_form(rng, fields) for _ in range(EXAMPLES_PER_ROUTE)]
            # Plus one form per extreme value in every field the page shows and the common names.
            forms += [dict.fromkeys(set(fields) | set(FIELD_POOL), value) for value in EXTREMES]
            for form in forms:
                form["csrf_token"] = token
                tried[role] += 1
                sample = sorted({str(v)[:30] for k, v in form.items() if k != "csrf_token"})[:4]
                try:
                    response = client.post(url, data=form)
                except Exception as exc:  # noqa: BLE001 - TESTING propagates what users would see as a 500
                    db.session.rollback()
                    failures.append(
                        f"{role} POST {url} -> 500 {type(exc).__name__}: {str(exc)[:80]} (values like {sample})"
                    )
                    continue
                if response.status_code not in accepted:
                    failures.append(f"{role} POST {url} -> {response.status_code} (values like {sample})")
                if role == "anonymous" and url != "/login" and not api:
                    assert response.status_code in (302, 400), (url, response.status_code)
    assert not failures, "\n".join(sorted(set(failures)))
    assert sum(tried.values()) >= len(routes) * len(ROLES) * (EXAMPLES_PER_ROUTE + len(EXTREMES))


def test_random_posts_to_webhooks_are_refused_without_signature(app, world):
    rng = random.Random(SEED + 1)
    client = RoleClient(app)
    for url in sorted(WEBHOOKS):
        for _ in range(10):
            form = _random_form(rng, ["MessageSid", "MessageStatus", "From", "To", "Body", "ErrorCode"])
            headers = {"X-Twilio-Signature": _random_value(rng)[:200]} if rng.random() < 0.5 else {}
            response = client.post(url, data=form, headers=headers)
            assert response.status_code in (400, 403), (url, response.status_code)  # 400: NUL bytes refused first
