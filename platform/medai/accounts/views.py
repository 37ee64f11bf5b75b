"""The signed-in home page: who you are on the platform, and the way to the dashboards."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from medai.accounts.models import Membership


@login_required
def home(request: HttpRequest) -> HttpResponse:
    membership = Membership.objects.select_related("region", "organization").filter(user=request.user).first()
    return render(request, "accounts/home.html", {
        "membership": membership,
        "identity_provider": "Keycloak" if settings.KEYCLOAK_URL else "local accounts",
    })
