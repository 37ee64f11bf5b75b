"""Patient attributes other parts of the platform need from a study's DICOM metadata (DICOM JSON)."""

import re

# Issuers under which clinics send the single OMS policy number (ENP) in OtherPatientIDsSequence.
OMS_ISSUERS = {"OMS", "ENP"}
ENP_PATTERN = re.compile(r"^\d{16}$")


def _first(metadata: dict, tag: str):
    values = metadata.get(tag, {}).get("Value", [])
    return values[0] if values else None


def oms_policy_number(metadata: dict) -> str | None:
    """The 16-digit OMS policy number from OtherPatientIDsSequence (0010,1002) with issuer OMS/ENP, if any."""
    for item in metadata.get("00101002", {}).get("Value", []):
        issuer = str(_first(item, "00100021") or "").strip().upper()
        number = str(_first(item, "00100020") or "").strip()
        if issuer in OMS_ISSUERS and ENP_PATTERN.match(number):
            return number
    return None
