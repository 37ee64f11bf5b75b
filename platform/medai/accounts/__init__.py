"""Who is calling: local users with API tokens, their roles and tenant scope (Keycloak comes with the identity issue)."""
