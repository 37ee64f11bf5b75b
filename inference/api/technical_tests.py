"""/api/v1/technical-tests: technical testing of an AI service on a labelled reference dataset, by the
platform operator. Start one (the service, the organization holding the dataset's studies, the labels as
CSV); read its report as it finishes; download its ROC curve."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, parsers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from inference.quality.records import TechnicalTest
from inference.quality.testing import TestRefused, labels_from_csv, technical_test_refresh, technical_test_start
from inference.records import AIService
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from tenants.models import MedicalOrganization


class TechnicalTestSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="code", read_only=True)
    organization = serializers.SlugRelatedField(slug_field="oms_code", read_only=True)
    roc = serializers.SerializerMethodField()

    class Meta:
        model = TechnicalTest
        fields = ["id", "service", "organization", "name", "status", "report", "roc", "created_by", "created_at",
                  "finished_at"]

    def get_roc(self, test: TechnicalTest) -> str | None:
        return f"/api/v1/technical-tests/{test.id}/roc.png" if test.roc_png else None


class TechnicalTestRequest(serializers.Serializer):
    service = serializers.SlugRelatedField(slug_field="code", queryset=AIService.objects.all())
    organization = serializers.SlugRelatedField(slug_field="oms_code", queryset=MedicalOrganization.objects.all(),
                                                help_text="OMS code of the organization the studies were stored in")
    name = serializers.CharField(max_length=200)
    labels = serializers.FileField(help_text="CSV: study_instance_uid;label (1 pathology present, 0 absent)")


class TechnicalTestViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                           viewsets.GenericViewSet):
    serializer_class = TechnicalTestSerializer
    permission_classes = [HasRole(Role.PLATFORM_ADMIN)]
    parser_classes = [parsers.MultiPartParser, parsers.FormParser]
    queryset = TechnicalTest.objects.select_related("service", "organization")

    @extend_schema(request={"multipart/form-data": TechnicalTestRequest}, responses={201: TechnicalTestSerializer})
    def create(self, request, *args, **kwargs) -> Response:
        body = TechnicalTestRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            text = data["labels"].read(1 << 20).decode("utf-8-sig")
            test = technical_test_start(service=data["service"], organization=data["organization"],
                                        name=data["name"], labels=labels_from_csv(text),
                                        created_by=request.auth.subject)
        except (TestRefused, UnicodeDecodeError) as refused:
            raise serializers.ValidationError({"labels": str(refused)}) from refused
        return Response(self.get_serializer(test).data, status=201)

    def retrieve(self, request, *args, **kwargs) -> Response:
        return Response(self.get_serializer(technical_test_refresh(test=self.get_object())).data)

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], url_path="roc.png")
    def roc(self, request, pk=None) -> HttpResponse:
        test = self.get_object()
        if not test.roc_png:
            raise NotFound("Отчёт ещё не готов.")
        return HttpResponse(bytes(test.roc_png), content_type="image/png")
