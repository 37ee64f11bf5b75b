"""The SOP classes the archive accepts: every current Storage SOP Class in pydicom's UID dictionary."""

from pydicom._uid_dict import UID_dictionary


def _storage_sop_classes() -> frozenset[str]:
    return frozenset(
        uid
        for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and not retired
    )


STORAGE_SOP_CLASSES = _storage_sop_classes()
