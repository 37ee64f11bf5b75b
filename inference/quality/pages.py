"""The maturity matrix for the ministry and the operator: a server-rendered page and its CSV.

Signed in with a web session (Keycloak, or local accounts in embedded mode) or an API token; the matrix
covers every service nationally, so it is for national roles and regional health departments.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from inference.quality.maturity import CSV_HEADER, maturity_csv, maturity_matrix
from medai.accounts.models import Role
from medai.accounts.principal import principal_of_member
from tenants.scope import dangerously_unscoped

READERS = (Role.PLATFORM_ADMIN, Role.MINISTRY_ANALYST, Role.REGIONAL_ADMIN)


def _matrix(request: HttpRequest):
    principal = principal_of_member(request.user)
    if principal is None or not principal.has_role(*READERS):
        raise PermissionDenied("Матрица зрелости доступна министерству, оператору и региональным органам.")
    with dangerously_unscoped():  # services and their national metrics: no patient or tenant rows shown
        return maturity_matrix(today=timezone.localdate())


@login_required
def maturity_page(request: HttpRequest) -> HttpResponse:
    rows = _matrix(request)
    return render(request, "quality/maturity.html", {"rows": rows, "header": CSV_HEADER})


@login_required
def maturity_csv_download(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(maturity_csv(_matrix(request)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="maturity-matrix.csv"'
    return response
