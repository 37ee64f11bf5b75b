"""UIDs of the objects an analysis adds to its study: the same for the same analysis, so a rerun can
never add a second copy, and derivable by the API without a lookup."""

import uuid

_NAMESPACE = uuid.UUID("5f2b3c9e-8a41-4f57-9a55-1d8c0e7a6b21")


def result_uid(analysis_id: int, purpose: str) -> str:
    """`purpose`: "sr-series", "sr", "sc-series", "sc/<n>"."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'analysis/{analysis_id}/{purpose}').int}"
