"""Provisioning tenants in Keycloak: groups per region and organization, PACS clients, invited users.

The group tree is the scope model of the access tokens: `/regions/<region code>/<OMS code>` for an
organization's people and machines, `/regions/<region code>` for regional staff, `/national` for the
ministry and the operator. Roles are realm roles. python-keycloak's KeycloakAdmin does the calls,
authenticated as the realm's `medai-admin` service account.
"""

from dataclasses import dataclass

from django.conf import settings
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakGetError

from medai.accounts.keycloak import NATIONAL_GROUP, REGIONS_GROUP
from medai.accounts.models import Role
from tenants.models import MedicalOrganization, Region

GROUPS_MAPPER = {
    "name": "groups",
    "protocol": "openid-connect",
    "protocolMapper": "oidc-group-membership-mapper",
    "config": {"full.path": "true", "claim.name": "groups", "access.token.claim": "true",
               "id.token.claim": "true", "userinfo.token.claim": "true"},
}


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


class KeycloakDirectory:
    def __init__(self, *, url: str, realm: str, client_id: str, client_secret: str, audience: str) -> None:
        connection = KeycloakOpenIDConnection(
            server_url=url, realm_name=realm, user_realm_name=realm, client_id=client_id,
            client_secret_key=client_secret, grant_type="client_credentials", timeout=20,
        )
        self.admin = KeycloakAdmin(connection=connection)
        self.audience = audience

    @classmethod
    def from_settings(cls) -> "KeycloakDirectory":
        return cls(
            url=settings.KEYCLOAK_URL, realm=settings.KEYCLOAK_REALM, client_id=settings.KEYCLOAK_ADMIN_CLIENT_ID,
            client_secret=settings.KEYCLOAK_ADMIN_CLIENT_SECRET, audience=settings.KEYCLOAK_CLIENT_ID,
        )

    def group_path(self, *, region: Region | None = None, organization: MedicalOrganization | None = None) -> str:
        if organization is not None:
            return f"{REGIONS_GROUP}/{organization.region.code}/{organization.oms_code}"
        if region is not None:
            return f"{REGIONS_GROUP}/{region.code}"
        return NATIONAL_GROUP

    def ensure_group(self, path: str) -> str:
        """The id of the group at `path`, creating it (and nothing above it) if missing."""
        existing = self._group_id(path)
        if existing:
            return existing
        parent_path, _, name = path.rpartition("/")
        parent_id = self._group_id(parent_path) if parent_path else None
        if parent_path and parent_id is None:
            parent_id = self.ensure_group(parent_path)
        return self.admin.create_group({"name": name}, parent=parent_id, skip_exists=True) or self._group_id(path)

    def create_pacs_client(self, organization: MedicalOrganization) -> ClientCredentials:
        """A confidential client whose service account uploads for the organization; the secret is shown once."""
        client_id = f"pacs-{organization.region.code.lower()}-{organization.oms_code}"
        audience_mapper = {
            "name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
            "config": {"included.client.audience": self.audience, "access.token.claim": "true"},
        }
        internal_id = self.admin.create_client(
            {
                "clientId": client_id, "name": f"PACS of {organization.name}"[:255], "enabled": True,
                "publicClient": False, "serviceAccountsEnabled": True, "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False, "protocolMappers": [GROUPS_MAPPER, audience_mapper],
            },
            skip_exists=True,
        ) or self.admin.get_client_id(client_id)
        account = self.admin.get_client_service_account_user(internal_id)
        self.admin.group_user_add(account["id"], self.ensure_group(self.group_path(organization=organization)))
        self._assign_role(account["id"], Role.UPLOADER)
        secret = self.admin.generate_client_secrets(internal_id)["value"]
        return ClientCredentials(client_id, secret)

    def create_user(
        self, *, username: str, email: str, first_name: str, last_name: str, role: Role, group_path: str,
        password: str | None = None,
    ) -> str:
        """A user in the group with the role. Without a password, Keycloak asks them to set one at first sign-in.

        Keycloak's user profile requires e-mail and names; without them it holds the account back."""
        payload = {"username": username, "email": email, "firstName": first_name, "lastName": last_name,
                   "enabled": True, "emailVerified": True}
        if password is None:
            payload["requiredActions"] = ["UPDATE_PASSWORD"]
        else:
            payload["credentials"] = [{"type": "password", "value": password, "temporary": False}]
        user_id = self.admin.create_user(payload, exist_ok=False)
        self.admin.group_user_add(user_id, self.ensure_group(group_path))
        self._assign_role(user_id, role)
        return user_id

    def disable_client(self, client_id: str) -> None:
        internal_id = self.admin.get_client_id(client_id)
        if internal_id:
            self.admin.update_client(internal_id, {"enabled": False})

    def _assign_role(self, user_id: str, role: Role) -> None:
        self.admin.assign_realm_roles(user_id, [self.admin.get_realm_role(str(role))])

    def _group_id(self, path: str) -> str | None:
        try:
            return self.admin.get_group_by_path(path)["id"]
        except KeycloakGetError:  # no group at that path
            return None
