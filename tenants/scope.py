"""Setting the tenant scope of the current transaction, for row-level security (see tenants/rls.py).

Requests get theirs from authentication; Celery tasks from the organization they work for. The
one way to see every tenant is spelled `dangerously_unscoped`, so a reviewer can grep for it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from medai.accounts.principal import Principal, Scope


def set_transaction_scope(*, scope: Scope, region_id: int | None = None, organization_id: int | None = None) -> None:
    """Scope the current transaction; outside one it lasts a single statement, so it fails closed.

    Only the id of the scope's own level is set: the policy lets a row through on either id.
    """
    region = str(region_id) if scope is Scope.REGION and region_id else ""
    organization = str(organization_id) if scope is Scope.ORGANIZATION and organization_id else ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('medai.scope', %s, true), set_config('medai.region_id', %s, true),"
            " set_config('medai.organization_id', %s, true)",
            [str(scope), region, organization],
        )


def scope_to_principal(principal: Principal) -> None:
    set_transaction_scope(
        scope=principal.scope, region_id=principal.region_id, organization_id=principal.organization_id
    )


@contextmanager
def organization_scope(*, organization_id: int) -> Iterator[None]:
    """A transaction that sees one organization's rows: for tasks working on its behalf."""
    with transaction.atomic():
        set_transaction_scope(scope=Scope.ORGANIZATION, organization_id=organization_id)
        yield


@contextmanager
def dangerously_unscoped() -> Iterator[None]:
    """A transaction that sees every tenant: for system jobs (completion sweeps, orphan sweeps) only."""
    with transaction.atomic():
        set_transaction_scope(scope=Scope.NATIONAL)
        yield
