"""The dashboards: server-rendered pages of the nation, a region and an organization.

Signed in with a web session (Keycloak, or local accounts in embedded mode). Each page runs in its
caller's tenant scope, like an API request, and reads what /api/v1/stats reads (medai.stats.dashboards).
"""

import datetime as dt

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _

from medai.accounts.principal import Principal, Scope, principal_of_member
from medai.stats.dashboards import dashboard_of
from medai.stats.selectors import latest_local_day, slice_visible
from medai.stats.serializers import DEFAULT_DAYS
from medai.stats.views import STATS_READERS
from tenants.scope import scope_to_principal

MODALITIES = [("DX", "DX"), ("CR", "CR"), ("CT", "CT"), ("MG", "MG")]


class DashboardFilter(forms.Form):
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    modality = forms.MultipleChoiceField(label=_("Modality"), choices=MODALITIES, required=False,
                                         widget=forms.CheckboxSelectMultiple)

    def window(self) -> tuple[dt.date, dt.date, list[str]]:
        """The dates and modalities asked for; the last 30 days of every modality when none (or bad) are given."""
        data = self.cleaned_data if self.is_valid() else {}
        date_to = data.get("date_to") or latest_local_day()
        date_from = data.get("date_from") or date_to - dt.timedelta(days=DEFAULT_DAYS)
        if date_from > date_to:
            date_from = date_to
        return date_from, date_to, data.get("modality") or []


def _principal(request: HttpRequest) -> Principal:
    principal = principal_of_member(request.user)
    if principal is None or not principal.has_role(*STATS_READERS):
        raise PermissionDenied(_("Dashboards are for the ministry, regional health departments, clinics' "
                                 "administrators and finance."))
    scope_to_principal(principal)
    return principal


@login_required
def dashboard_home(request: HttpRequest) -> HttpResponse:
    """The caller's own level: the nation, their region, or their organization."""
    principal = _principal(request)
    if principal.scope is Scope.NATIONAL:
        return redirect("dashboard-national")
    part = slice_visible(principal=principal, level=str(principal.scope))
    if part.organization is not None:
        return redirect("dashboard-organization", code=part.organization.oms_code)
    return redirect("dashboard-region", code=part.region.code)


def _page(request: HttpRequest, *, level: str, region_code: str = "", organization_code: str = "") -> HttpResponse:
    principal = _principal(request)
    part = slice_visible(principal=principal, level=level, region_code=region_code,
                         organization_code=organization_code)
    filters = DashboardFilter(request.GET or None)
    date_from, date_to, modalities = filters.window()
    board = dashboard_of(part=part, date_from=date_from, date_to=date_to, modalities=modalities)
    return render(request, "stats/dashboard.html", {
        "board": board, "filters": filters, "principal": principal,
        "query": request.GET.urlencode(), "national_reader": principal.scope is Scope.NATIONAL,
    })


@login_required
def national_page(request: HttpRequest) -> HttpResponse:
    return _page(request, level="national")


@login_required
def region_page(request: HttpRequest, code: str) -> HttpResponse:
    return _page(request, level="region", region_code=code)


@login_required
def organization_page(request: HttpRequest, code: str) -> HttpResponse:
    return _page(request, level="organization", organization_code=code)
