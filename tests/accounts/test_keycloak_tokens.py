"""Keycloak access tokens: real ones work, forged, stale and misdirected ones are refused and logged.

Keycloak runs for real. The realm is given an RSA key the test holds (a key provider component),
so the test can also mint tokens that differ from a good one in exactly one claim.
"""

import base64
import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakOpenIDConnection

from medai.accounts.models import Role
from medai.archive.synthetic import make_series, to_bytes
from tenants.identity import KeycloakDirectory
from tests.dicomweb.stow_client import multipart, stow

PLATFORM_SECRET = "medai-platform-dev-secret"  # realm.json, dev only
ADMIN_SECRET = "medai-admin-dev-secret"  # realm.json, dev only


def master_admin(url: str) -> KeycloakAdmin:
    return KeycloakAdmin(connection=KeycloakOpenIDConnection(
        server_url=url, username="admin", password="admin", realm_name="medai", user_realm_name="master",
        client_id="admin-cli"))


def add_realm_key(url: str, priority: int) -> tuple[rsa.RSAPrivateKey, str]:
    """Give the realm a signing key we hold; the highest priority key signs new tokens. Returns (key, kid)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    admin = master_admin(url)
    admin.create_component({
        "name": f"test-key-{priority}", "providerId": "rsa", "providerType": "org.keycloak.keys.KeyProvider",
        "parentId": admin.get_realm("medai")["id"],
        "config": {"priority": [str(priority)], "enabled": ["true"], "active": ["true"], "algorithm": ["RS256"],
                   "privateKey": [pem]},
    })
    modulus = key.public_key().public_numbers().n
    certs = requests.get(f"{url}/realms/medai/protocol/openid-connect/certs", timeout=10).json()["keys"]
    for jwk in certs:
        if jwk.get("n") and int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big") == modulus:
            return key, jwk["kid"]
    raise AssertionError("the realm does not publish the added key")


@pytest.fixture(scope="session")
def realm_key(keycloak):
    return add_realm_key(keycloak.url, priority=1000)


@pytest.fixture
def directory(keycloak, settings) -> KeycloakDirectory:
    settings.KEYCLOAK_URL = keycloak.url
    settings.KEYCLOAK_ADMIN_CLIENT_SECRET = ADMIN_SECRET
    return KeycloakDirectory.from_settings()


@pytest.fixture
def clinic(tenant_factory, directory):
    organization, _ = tenant_factory()
    return organization


def claims_for(keycloak_url: str, organization, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": f"{keycloak_url}/realms/medai", "sub": str(uuid.uuid4()), "aud": ["medai-platform"],
        "azp": "medai-platform", "iat": now, "exp": now + 120, "preferred_username": "forged-but-valid",
        "realm_access": {"roles": ["uploader"]},
        "groups": [f"/regions/{organization.region.code}/{organization.oms_code}"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict, key, kid: str, algorithm: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def qido(client, token: str):
    return client.get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_token_signed_by_the_realm_is_accepted(client, keycloak, realm_key, clinic):
    key, kid = realm_key
    assert qido(client, sign(claims_for(keycloak.url, clinic), key, kid)).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": int(time.time()) - 120}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 600}, id="not-yet-valid"),
        pytest.param({"iss": "http://127.0.0.1:1/realms/medai"}, id="wrong-issuer"),
        pytest.param({"aud": ["another-app"], "azp": "another-app"}, id="wrong-audience"),
        pytest.param({"exp": None}, id="no-expiry"),
    ],
)
def test_tokens_wrong_in_one_claim_get_401_and_are_logged(client, keycloak, realm_key, clinic, overrides, caplog):
    key, kid = realm_key
    response = qido(client, sign(claims_for(keycloak.url, clinic, **overrides), key, kid))
    assert response.status_code == 401
    assert any(r.name == "medai.security" and "401" in r.getMessage() for r in caplog.records)


def test_a_token_signed_by_another_key_gets_401(client, keycloak, realm_key, clinic, caplog):
    _, kid = realm_key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert qido(client, sign(claims_for(keycloak.url, clinic), stranger, kid)).status_code == 401
    assert "Signature verification failed" in caplog.text


def test_unsigned_and_hmac_tokens_get_401(client, keycloak, realm_key, clinic):
    _, kid = realm_key
    claims = claims_for(keycloak.url, clinic)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert qido(client, f"{header}.{body}.").status_code == 401
    confused = sign(claims, "a-shared-secret-of-at-least-32-bytes!", kid, algorithm="HS256")
    assert qido(client, confused).status_code == 401


def test_suspended_organization_and_missing_role_get_403(client, keycloak, realm_key, clinic, caplog):
    key, kid = realm_key
    assert qido(client, sign(claims_for(keycloak.url, clinic, realm_access={"roles": ["offline_access"]}),
                             key, kid)).status_code == 403
    clinic.status = clinic.Status.SUSPENDED
    clinic.save()
    response = qido(client, sign(claims_for(keycloak.url, clinic), key, kid))
    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]
    assert caplog.text.count("status=403") == 2


def test_a_role_the_caller_does_not_hold_is_refused(client, keycloak, realm_key, clinic):
    key, kid = realm_key
    token = sign(claims_for(keycloak.url, clinic, realm_access={"roles": ["radiologist"]}), key, kid)
    body = multipart([to_bytes(ds) for ds in make_series(count=1)])
    response = client.post("/dicomweb/studies", data=body, HTTP_AUTHORIZATION=f"Bearer {token}",
                           content_type='multipart/related; type="application/dicom"; boundary=medai-test-boundary')
    assert response.status_code == 403


def test_rotated_realm_keys_are_fetched_on_an_unknown_kid(client, keycloak, realm_key, clinic, settings):
    settings.KEYCLOAK_JWKS_COOLDOWN_SECONDS = 0.5
    key, kid = realm_key
    assert qido(client, sign(claims_for(keycloak.url, clinic), key, kid)).status_code == 200  # JWKS now cached
    new_key, new_kid = add_realm_key(keycloak.url, priority=2000)
    assert new_kid != kid
    time.sleep(0.5)  # past the refetch cooldown
    assert qido(client, sign(claims_for(keycloak.url, clinic), new_key, new_kid)).status_code == 200


def test_real_user_and_pacs_client_tokens_work_end_to_end(keycloak, directory, clinic, web_server_factory,
                                                           storage_backend, use_storage):
    base_url = web_server_factory(KEYCLOAK_URL=keycloak.url, **storage_backend)
    username = f"radiologist-{uuid.uuid4().hex[:8]}"
    directory.create_user(username=username, email=f"{username}@clinic.example", first_name="Anna",
                          last_name="Petrova", role=Role.RADIOLOGIST,
                          group_path=directory.group_path(organization=clinic), password="s3cret-pass")
    oidc = KeycloakOpenID(server_url=keycloak.url, realm_name="medai", client_id="medai-platform",
                          client_secret_key=PLATFORM_SECRET)
    user_token = oidc.token(username, "s3cret-pass")["access_token"]
    pacs = directory.create_pacs_client(clinic)
    machine = KeycloakOpenID(server_url=keycloak.url, realm_name="medai", client_id=pacs.client_id,
                             client_secret_key=pacs.client_secret)
    pacs_token = machine.token(grant_type="client_credentials")["access_token"]

    series = make_series(count=2)
    assert stow(base_url, pacs_token, multipart([to_bytes(ds) for ds in series])).status_code == 200
    found = requests.get(f"{base_url}/dicomweb/studies", headers={"Authorization": f"Bearer {user_token}"},
                         timeout=10)
    assert found.status_code == 200
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [str(series[0].StudyInstanceUID)]
    assert stow(base_url, user_token, multipart([to_bytes(ds) for ds in series])).status_code == 403


def test_invited_users_must_set_their_password(directory, clinic):
    username = f"invited-{uuid.uuid4().hex[:8]}"
    user_id = directory.create_user(username=username, email=f"{username}@clinic.example", first_name="Ivan",
                                    last_name="Ivanov", role=Role.ORG_ADMIN,
                                    group_path=directory.group_path(organization=clinic))
    user = directory.admin.get_user(user_id)
    assert user["requiredActions"] == ["UPDATE_PASSWORD"]
    assert [g["path"] for g in directory.admin.get_user_groups(user_id)] == [directory.group_path(organization=clinic)]
    assert "org_admin" in [r["name"] for r in directory.admin.get_realm_roles_of_user(user_id)]


def test_onboarding_in_keycloak_mode_creates_group_client_and_invited_user(client, keycloak, directory,
                                                                            api_client_for, settings):
    from tenants.services import region_ensure

    region_ensure(code="RU-TAT", name="Республика Татарстан")
    assert directory.admin.get_group_by_path("/regions/RU-TAT")["name"] == "RU-TAT"
    admin = api_client_for(Role.PLATFORM_ADMIN)
    oms_code = f"16{uuid.uuid4().int % 10_000:04d}"
    created = admin.post("/api/v1/organizations", {"region": "RU-TAT", "oms_code": oms_code, "name": "ГАУЗ РКБ"},
                         format="json")
    assert created.status_code == 201, created.content
    credentials = created.json()["pacs_credentials"]
    assert credentials["client_secret"] and not credentials["api_token"]
    pacs = KeycloakOpenID(server_url=keycloak.url, realm_name="medai", client_id=credentials["client_id"],
                          client_secret_key=credentials["client_secret"])
    token = pacs.token(grant_type="client_credentials")["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert f"/regions/RU-TAT/{oms_code}" in claims["groups"] and "uploader" in claims["realm_access"]["roles"]
    assert qido(client, token).status_code == 200

    invited = admin.post(f"/api/v1/organizations/{created.json()['id']}/users",
                         {"username": f"dr-{oms_code}", "email": f"dr-{oms_code}@rkb.example", "first_name": "Ильдар",
                          "last_name": "Сафин", "role": "radiologist"}, format="json")
    assert invited.status_code == 201 and invited.json()["identity_provider"] == "keycloak"
    user = directory.admin.get_user(invited.json()["user_id"])
    assert user["requiredActions"] == ["UPDATE_PASSWORD"] and "api_token" not in invited.json()
