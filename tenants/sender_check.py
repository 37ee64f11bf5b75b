"""The sender check: does an organization's PACS send what the AI services and OMS billing need?

Run on a test study the PACS sent during onboarding; every requirement is reported with what was
found, so the clinic's engineer can fix its PACS/RIS configuration one line at a time.
"""

from dataclasses import asdict, dataclass

from pydicom.pixels import get_decoder
from pydicom.uid import UID

from medai.archive.models import Instance, Study
from medai.archive.patient import oms_policy_number

ANALYSED_MODALITIES = {"CR", "DX", "CT", "MG"}
VIEWS = {"CR": {"PA", "AP"}, "DX": {"PA", "AP"}, "MG": {"CC", "MLO"}}
CYRILLIC_CHARACTER_SETS = {"ISO_IR 192", "ISO_IR 144", "ISO 2022 IR 144"}


@dataclass(frozen=True)
class Requirement:
    requirement: str
    passed: bool
    detail: str


def _value(metadata: dict, tag: str) -> str:
    values = metadata.get(tag, {}).get("Value", [])
    if not values:
        return ""
    value = values[0]
    return str(value.get("Alphabetic", "")) if isinstance(value, dict) else str(value)


def check_study(study: Study) -> list[Requirement]:
    instances = list(Instance.objects.filter(study=study).select_related("series"))
    first = instances[0].metadata if instances else {}
    modalities = sorted({i.series.modality for i in instances})
    results = [
        _present(first, "00100020", "Patient ID"),
        _present(first, "00100010", "Patient name"),
        _date(first, "00100030", "Patient birth date"),
        _choice(first, "00100040", "Patient sex", {"M", "F", "O"}),
        _present(first, "00080050", "Accession number"),
        _date(first, "00080020", "Study date"),
        Requirement("Modality analysed by the platform", bool(set(modalities) & ANALYSED_MODALITIES),
                    f"found {', '.join(modalities) or 'none'}; analysed: {', '.join(sorted(ANALYSED_MODALITIES))}"),
        _present(first, "00180015", "Body part examined"),
        *_views(instances),
        _policy(first),
        _transfer_syntaxes(instances),
        _character_set(first),
    ]
    return results


def report_of(requirements: list[Requirement]) -> list[dict]:
    return [asdict(r) for r in requirements]


def _present(metadata: dict, tag: str, name: str) -> Requirement:
    value = _value(metadata, tag)
    return Requirement(name, bool(value.strip()), "present" if value.strip() else f"({tag[:4]},{tag[4:]}) is empty")


def _date(metadata: dict, tag: str, name: str) -> Requirement:
    value = _value(metadata, tag)
    ok = len(value) == 8 and value.isdigit()
    return Requirement(name, ok, value if ok else f"({tag[:4]},{tag[4:]}) is {value or 'empty'}, not YYYYMMDD")


def _choice(metadata: dict, tag: str, name: str, allowed: set[str]) -> Requirement:
    value = _value(metadata, tag)
    return Requirement(name, value in allowed, f"{value or 'empty'}; expected one of {', '.join(sorted(allowed))}")


def _views(instances: list[Instance]) -> list[Requirement]:
    results = []
    for modality, allowed in VIEWS.items():
        of_modality = [i for i in instances if i.series.modality == modality]
        if not of_modality:
            continue
        found = {_value(i.metadata, "00185101") for i in of_modality}
        detail = f"found {', '.join(sorted(found)) or 'none'}; expected {', '.join(sorted(allowed))}"
        results.append(Requirement(f"{modality} view position", found <= allowed, detail))
    return results


def _policy(metadata: dict) -> Requirement:
    number = oms_policy_number(metadata)
    detail = "present" if number else "no 16-digit number with issuer OMS or ENP in Other Patient IDs (0010,1002)"
    return Requirement("OMS policy number (ENP)", number is not None, detail)


def _decodable(uid: str) -> bool:
    try:
        return get_decoder(UID(uid)).is_available
    except (NotImplementedError, ValueError):
        return False


def _transfer_syntaxes(instances: list[Instance]) -> Requirement:
    syntaxes = {i.transfer_syntax_uid for i in instances}
    unsupported = [s for s in syntaxes if not _decodable(s)]
    return Requirement("Transfer syntax the platform decodes", not unsupported and bool(syntaxes),
                       f"found {', '.join(sorted(UID(s).name for s in syntaxes)) or 'none'}")


def _character_set(metadata: dict) -> Requirement:
    charset = {str(v) for v in metadata.get("00080005", {}).get("Value", [])}
    ok = bool(charset & CYRILLIC_CHARACTER_SETS)
    return Requirement("Character set for Cyrillic names", ok,
                       f"Specific Character Set is {', '.join(sorted(charset)) or 'absent'};"
                       f" expected ISO_IR 192 (UTF-8) or ISO_IR 144")
