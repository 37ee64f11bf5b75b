"""Who is calling: local users with API tokens, their roles and tenant scope (Keycloak joins later)."""
