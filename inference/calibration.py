"""Operating points chosen on a labelled validation set."""

from collections.abc import Sequence


def threshold_for_full_sensitivity(scores: Sequence[float], labels: Sequence[bool], *, margin: float = 0.5) -> float:
    """The autonomous threshold: every positive of the validation set scores at or above it (sensitivity 1.0).

    It is the lowest positive score times `margin` (< 1 leaves room for positives scoring a little lower
    than any seen); a study scoring below it is a confident normal.
    """
    positives = [score for score, positive in zip(scores, labels, strict=True) if positive]
    if not positives:
        raise ValueError("a validation set without positives cannot fix a threshold for sensitivity 1.0")
    return min(positives) * margin
