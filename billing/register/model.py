"""The register's header and lines, the file names, and the one refusal every writer and check raises."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import NamedTuple

VERSION = "3.2"
ENCODING = "windows-1251"
SCHEMAS = Path(__file__).parent.parent / "schemas"

_CENT = Decimal("0.01")



class RegisterInvalid(ValueError):
    """A register package that must not be offered: names the member and, where known, the line."""


@dataclass(frozen=True)
class RegisterHeader:
    organization_oms_code: str  # CODE_MO and LPU, e.g. "770002"
    organization_name: str
    tfoms_code: str  # 2-digit code of the territorial fund, e.g. "45"; also PLAT
    year: int
    month: int  # 1..12
    number: int  # sequence number of this export of the period (N in file names, part of NSCHET)
    created: date  # DATA, DSCHET
    count: int  # SD_Z: number of ZAP
    total: Decimal  # SUMMAV: sum of all line amounts (2 places)


class RegisterLine(NamedTuple):
    """One service of the register. A named tuple, not a frozen dataclass: a million are made per export,
    and a tuple is built several times faster."""

    service_id: int  # IDSERV; also used as ID_PAC and IDCASE (unique per file, opaque)
    policy_number: str  # NPOLIS: 16-digit ENP; VPOLIS is 3
    insurer_code: str  # SMO, "" when unknown -> element omitted
    service_date: date  # DATE_Z_1, DATE_Z_2, DATE_IN, DATE_OUT
    service_code: str  # CODE_USL (tariff's code of the territorial programme)
    study_kind: str  # e.g. "chest_xray" (CSV/XLSX only)
    diagnosis_code: str  # DS1, "" -> omitted
    care_profile: str  # PROFIL, "" -> omitted
    tariff: Decimal  # TARIF
    amount: Decimal  # SUMV_USL and SUMV; negative for a reversal
    correction: bool  # a reversal of an earlier period's service: PR_NOV = 1, else 0
    family_name: str  # FAM  (PERS_LIST)
    given_name: str  # IM
    middle_name: str  # OT ("" -> omitted)
    sex: str  # "M", "F" or "" -> W is 1 for M, 2 for F, omitted if unknown
    birth_date: date | None  # DR, omitted if None


# --- file names ---------------------------------------------------------------------------------------------


def stems(header: RegisterHeader) -> tuple[str, str]:
    suffix = f"{header.organization_oms_code}T{header.tfoms_code}_{period_number(header)}"
    return f"HM{suffix}", f"LM{suffix}"


def period_number(header: RegisterHeader) -> str:
    return f"{header.year % 100:02d}{header.month:02d}{header.number}"


def register_file_names(header: RegisterHeader) -> tuple[str, str, str]:
    """(HM member, LM member, ZIP archive), e.g. ("HM770002T45_26111.XML", "LM….XML", "HM770002T45_26111.zip")."""
    hm, lm = stems(header)
    return f"{hm}.XML", f"{lm}.XML", f"{hm}.zip"


def money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, ROUND_HALF_UP)
