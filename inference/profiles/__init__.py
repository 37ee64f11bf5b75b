"""Per kind of study: the input audit, the tensors, and the reading of the model's answer (see base.py).

`PROFILES` is keyed by the name an AI service's `profile` field holds."""

from inference.profiles.base import InputRejected, Prepared, Profile, Refusal
from inference.profiles.chest_ct import ChestCT
from inference.profiles.chest_xray import ChestXray
from inference.profiles.mammography import Mammography

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (ChestXray(), ChestCT(), Mammography())}

__all__ = ["PROFILES", "InputRejected", "Prepared", "Profile", "Refusal", "profile_for"]


def profile_for(name: str) -> Profile:
    """The profile of that name; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; one of {sorted(PROFILES)}") from None
