"""/api/v1/stats: the daily counts at the caller's level, as JSON or CSV (?format=csv)."""

import csv
import io

from drf_spectacular.utils import extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.stats.selectors import slice_visible, small_cell, stats_table
from medai.stats.serializers import StatsQuerySerializer

STATS_READERS = (Role.PLATFORM_ADMIN, Role.MINISTRY_ANALYST, Role.REGIONAL_ADMIN, Role.ORG_ADMIN, Role.FINANCE)


class CSVRenderer(BaseRenderer):
    """The table as CSV, for spreadsheets; an error as its detail."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        out = io.StringIO()
        if isinstance(data, dict) and "rows" in data:
            writer = csv.DictWriter(out, fieldnames=[*data["group_by"], *data["stats"]])
            writer.writeheader()
            writer.writerows(data["rows"])
        else:
            csv.writer(out).writerows([["detail"], [data.get("detail", data) if isinstance(data, dict) else data]])
        return out.getvalue().encode()


class StatsView(APIView):
    """Studies, AI outcomes, defects, reviews, money and processing time by day, month, modality, service,
    region or organization. The ministry sees the nation, a region its own, an organization itself."""

    permission_classes = [HasRole(*STATS_READERS)]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(parameters=[StatsQuerySerializer], responses={200: dict})
    def get(self, request: Request) -> Response:
        lists = {name: request.query_params.getlist(name) for name in ("group_by", "stats", "modality")}
        query = StatsQuerySerializer(data={**request.query_params.dict(), **lists})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        level = params.get("level") or str(request.auth.scope)
        part = slice_visible(principal=request.auth, level=level, region_code=params.get("region", ""),
                             organization_code=params.get("organization", ""))
        suppress_below = None if level == "organization" else small_cell()
        rows = stats_table(part=part, date_from=params["date_from"], date_to=params["date_to"],
                           group_by=params["group_by"], stats=params["stats"], suppress_below=suppress_below,
                           modalities=params.get("modality"))
        return Response({"level": level, "date_from": params["date_from"], "date_to": params["date_to"],
                         "group_by": params["group_by"], "stats": params["stats"],
                         "modality": params.get("modality", []), "small_cell": suppress_below, "rows": rows})
