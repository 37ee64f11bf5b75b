"""Tenants: regions (subjects of the federation) and their medical organizations."""
