"""Web pages sign in: with Keycloak's authorization-code flow, or local accounts in embedded mode."""

import re
import uuid
from html import unescape

import requests

from medai.accounts.models import Role
from medai.accounts.services import user_ensure
from tenants.identity import KeycloakDirectory


def test_embedded_mode_signs_in_with_a_local_account(client, tenant_factory):
    organization, _ = tenant_factory()
    user_ensure(username="dr.local", role=Role.RADIOLOGIST, organization=organization, password="local-pass-123")
    assert client.get("/").status_code == 302
    response = client.post("/accounts/login/?next=/", {"username": "dr.local", "password": "local-pass-123"},
                           follow=True)
    page = response.content.decode()
    assert "dr.local" in page and "radiologist" in page and organization.name in page


def login_form_action(session: requests.Session, page: requests.Response) -> str:
    """The Keycloak login form's target. Keycloak marks its cookies Secure; browsers send those to
    http://127.0.0.1 (a secure context), requests does not, so the test client is told to."""
    for cookie in session.cookies:
        cookie.secure = False
    return unescape(re.search(r'<form[^>]+id="kc-form-login"[^>]+action="([^"]+)"', page.text).group(1))


def test_keycloak_authorization_code_flow_signs_a_radiologist_in(keycloak, tenant_factory, settings,
                                                                 web_server_factory):
    settings.KEYCLOAK_URL = keycloak.url
    settings.KEYCLOAK_ADMIN_CLIENT_SECRET = "medai-admin-dev-secret"
    organization, _ = tenant_factory()
    directory = KeycloakDirectory.from_settings()
    username = f"web-{uuid.uuid4().hex[:8]}"
    directory.create_user(username=username, email=f"{username}@clinic.example", first_name="Мария",
                          last_name="Иванова", role=Role.RADIOLOGIST,
                          group_path=directory.group_path(organization=organization), password="kc-pass-123")
    base_url = web_server_factory(KEYCLOAK_URL=keycloak.url, KEYCLOAK_CLIENT_SECRET="medai-platform-dev-secret")

    browser = requests.Session()
    login_page = browser.get(base_url + "/", timeout=30)
    assert login_page.url.startswith(keycloak.url + "/realms/medai/protocol/openid-connect/auth")
    credentials = {"username": username, "password": "kc-pass-123"}
    home = browser.post(login_form_action(browser, login_page), data=credentials, timeout=30)
    assert home.url == base_url + "/"
    assert username in home.text and "radiologist" in home.text and organization.name in home.text

    wrong = requests.Session()
    page = wrong.get(base_url + "/", timeout=30)
    refused = wrong.post(login_form_action(wrong, page), data={"username": username, "password": "wrong"}, timeout=30)
    assert not refused.url.startswith(base_url)
