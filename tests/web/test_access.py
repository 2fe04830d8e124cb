"""Walk every registered route: anonymous users are sent to /login; roles get what they should."""

import pytest

from tests.conftest import login

API_DOCS = {"/api/v1/openapi.json", "/api/v1/docs"}
PUBLIC = {"/login", "/healthz", "/readyz", "/sms/inbound", "/sms/status", "/mail/unsubscribe/1"}
ADMIN_ONLY_PREFIXES = ("/users", "/stores", "/settings", "/audit", "/admin/")


def _get_routes(app):
    """Every GET route with its URL filled with id 1 (static files excluded)."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or "GET" not in rule.methods:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1").replace(f"<path:{arg}>", "x")
        routes.append(url)
    return sorted(set(routes))


def test_every_page_needs_login_except_public(app, client):
    routes = _get_routes(app)
    assert len(routes) > 10
    for url in routes:
        response = client.get(url)
        if url in PUBLIC:  # an unsubscribe link signed "1" is refused (400), without a login
            assert response.status_code in ((400,) if url.startswith("/mail/") else (200, 405)), url
        elif url.startswith("/api/v1/"):  # the API: its document is public, the rest wants a bearer token
            expected = 200 if url in API_DOCS else 401
            assert response.status_code == expected and response.is_json == (url != "/api/v1/docs"), url
        else:
            assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_every_post_route_needs_login_or_signature(app, client):
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1")
        response = client.post(url)
        # Without a session: CSRF refusal (400), login redirect (302) or a signature refusal (403);
        # the API (no session, no CSRF) wants a bearer token (401).
        expected = (401,) if url.startswith("/api/v1/") else (302, 400, 403)
        assert response.status_code in expected, (url, response.status_code)
        assert response.status_code != 200


@pytest.mark.parametrize("role", ["admin", "manager", "marketer"])
def test_each_role_gets_its_pages(app, client, login_as, role):
    login_as(role)
    for url in _get_routes(app):
        if url in PUBLIC or "/1" in url or url == "/logout":
            continue
        status = client.get(url).status_code
        if url.startswith("/api/v1/"):  # a logged-in session is no API credential: only the document is open
            assert status == (200 if url in API_DOCS else 401), (role, url, status)
        elif url.startswith(ADMIN_ONLY_PREFIXES):
            assert status == (200 if role == "admin" else 403), (role, url, status)
        elif url == "/flows/replies":  # customers' replies are for the people who run a store
            assert status == (403 if role == "marketer" else 200), (role, url, status)
        else:
            assert status == 200, (role, url, status)


def test_manager_sees_only_own_store_customers(client, make_store, make_user, make_customer):
    a, b = make_store("A"), make_store("B")
    mine, theirs = make_customer(store=a), make_customer(store=b)
    manager = make_user("manager", store=a)
    login(client, manager.email)
    assert client.get(f"/customers/{mine.id}").status_code == 200
    assert client.get(f"/customers/{theirs.id}").status_code == 404
    listing = client.get("/customers").get_data(as_text=True)
    assert mine.external_id in listing and theirs.external_id not in listing


def test_admin_sees_every_store(client, make_store, login_as, make_customer):
    a, b = make_store("A"), make_store("B")
    ca, cb = make_customer(store=a), make_customer(store=b)
    login_as("admin")
    listing = client.get("/customers").get_data(as_text=True)
    assert ca.external_id in listing and cb.external_id in listing


def test_missing_customer_is_404(client, login_as):
    login_as("admin")
    assert client.get("/customers/999999").status_code == 404


def test_health_endpoints(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["database"] == "ok"
