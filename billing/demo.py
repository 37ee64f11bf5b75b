"""Demo tariffs for `medai up`: one per kind of study in every region, from 01.01.2023 until further notice.

The mammography price is Moscow's real one (239 ₽, ../shared/domain.md); the others, and the service
codes (the nomenclature code of the study with an `.AI` suffix), are illustrative.
"""

import datetime as dt
from decimal import Decimal

from billing.models import Tariff
from billing.services import tariff_create
from inference.records import StudyKind
from tenants.models import Region
from tenants.scope import dangerously_unscoped

VALID_FROM = dt.date(2023, 1, 1)
# kind: (service code, name, price, DS1)
DEMO_TARIFFS = {
    StudyKind.MAMMOGRAPHY: ("A06.20.004.AI", "Описание и интерпретация маммографии с использованием ИИ",
                            Decimal("239.00"), "Z12.3"),
    StudyKind.CHEST_XRAY: ("A06.09.006.AI", "Описание и интерпретация рентгенографии (флюорографии) органов "
                           "грудной клетки с использованием ИИ", Decimal("150.00"), "Z11.1"),
    StudyKind.CHEST_CT: ("A06.09.005.AI", "Описание и интерпретация КТ органов грудной полости с использованием ИИ",
                         Decimal("500.00"), ""),
    StudyKind.HEAD_CT: ("A06.23.004.AI", "Описание и интерпретация КТ головного мозга с использованием ИИ",
                        Decimal("450.00"), ""),
}


def demo_tariffs_load() -> int:
    """Add the demo tariffs a region lacks (a restart adds nothing); returns how many were added."""
    added = 0
    with dangerously_unscoped():
        for region in Region.objects.all():
            for kind, (code, name, price, diagnosis) in DEMO_TARIFFS.items():
                if not Tariff.objects.filter(region=region, study_kind=kind).exists():
                    tariff_create(region=region, created_by="medai up", study_kind=kind, service_code=code,
                                  name=name, price=price, valid_from=VALID_FROM, diagnosis_code=diagnosis)
                    added += 1
    return added
