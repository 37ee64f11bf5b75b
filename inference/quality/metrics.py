"""Quality metrics of AI services against radiologists' verdicts, in numpy and the standard library only.

Clinical monitoring compares each service's results (a probability score per study and the binary decision at
its operating threshold) with the true labels the radiologists give. Everything here is pure and vectorised, so
it runs in a Celery task or a management command without scikit-learn or scipy in the production image:

- discrimination: `roc_auc` (exact, ties count one half), its DeLong confidence interval, `roc_curve`;
- the operating point: `operating_point` / `operating_point_from_decisions`, `youden_threshold`, Wilson intervals;
- drift: `positive_rate_shift` (two-proportion z-test), `population_stability_index`, `ks_statistic`;
- `ScoreHistogram`: per-bin counts that are summed over days and months instead of re-reading millions of rows;
- `roc_png`: the chart for reports.

Labels are 0/1 (or bool) array-likes with 1 for the pathology the service looks for; scores are finite floats.
Wrong input raises ValueError naming what is wrong, never returns NaN.
"""

import math
from dataclasses import dataclass
from io import BytesIO
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RATE_SHIFT_ALPHA = 0.01
"""A positive rate is called shifted below this two-sided p-value: with many services and months compared at
once, 0.05 would raise a false alarm in one comparison out of twenty."""

PSI_LIMIT = 0.2
"""The usual convention for the population stability index: below 0.1 stable, 0.1-0.2 a moderate shift worth
watching, above 0.2 a significant shift of the score distribution."""

PSI_EPSILON = 1e-4
"""The share put in a bin that one sample leaves empty: the logarithm of a zero share would be infinite."""

_GRID_TOLERANCE = 1e-9
"""Scores and thresholds this close (in bin widths) to a bin edge count as on it: 0.29 * 100 is 28.999999999999996
in floating point, yet a score of 0.29 belongs to the bin that starts at 0.29."""


# --- input checks ---------------------------------------------------------------------------------------------


def _binary(values: ArrayLike, name: str) -> np.ndarray:
    """0/1 or bool values as a bool array; anything else is a mistake of the caller (e.g. a category code)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} are empty")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1 or bool, got values {np.unique(array)[:5].tolist()}")
    return array.astype(bool)


def _finite(values: ArrayLike, name: str) -> np.ndarray:
    """Finite floats: a NaN score would silently fall out of every comparison."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} are empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite numbers (no NaN or infinity)")
    return array


def _same_length(labels: np.ndarray, values: np.ndarray, name: str) -> None:
    """Labels and per-study values pair up one to one, or the caller mixed up two queries."""
    if labels.size != values.size:
        raise ValueError(f"labels and {name} differ in length: {labels.size} != {values.size}")


def _labelled_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Checked labels (bool) and scores (float) of equal non-zero length."""
    y, s = _binary(labels, "labels"), _finite(scores, "scores")
    _same_length(y, s, "scores")
    return y, s


def _require_both_classes(y: np.ndarray, what: str, minimum: int = 1) -> None:
    """Discrimination metrics compare positives with negatives, so a sample needs both."""
    positives = int(y.sum())
    negatives = y.size - positives
    if positives < minimum or negatives < minimum:
        raise ValueError(
            f"{what} needs at least {minimum} positive and {minimum} negative label(s), "
            f"got {positives} positive and {negatives} negative"
        )


def _z(level: float) -> float:
    """The two-sided standard normal quantile of a confidence level (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


# --- discrimination -------------------------------------------------------------------------------------------


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of their ranks: the tie handling of Mann-Whitney and DeLong."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2)[inverse]


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """The area under the ROC curve: the probability that a random positive scores above a random negative.

    Computed exactly from the Mann-Whitney U statistic with average ranks, so a positive and a negative with the
    same score count one half; one sort, O(n log n), about a second for ten million results.
    """
    y, s = _labelled_scores(labels, scores)
    _require_both_classes(y, "AUC")
    positives = int(y.sum())
    negatives = y.size - positives
    rank_sum = _midranks(s)[y].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """The AUC and its DeLong variance by the fast algorithm of Sun & Xu (2014), three midrank computations.

    The placement value of a positive is the share of negatives it outscores (ties half); that of a negative
    the share of positives scoring above it. The AUC is the mean placement of the positives, and its variance
    is var(positive placements) / m + var(negative placements) / n (DeLong, DeLong & Clarke-Pearson 1988).
    """
    positive, negative = s[y], s[~y]
    m, n = positive.size, negative.size
    combined = _midranks(np.concatenate([positive, negative]))
    placements_positive = (combined[:m] - _midranks(positive)) / n
    placements_negative = 1 - (combined[m:] - _midranks(negative)) / m
    variance = placements_positive.var(ddof=1) / m + placements_negative.var(ddof=1) / n
    return float(placements_positive.mean()), float(variance)


def auc_confidence_interval(labels: ArrayLike, scores: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """The DeLong confidence interval of the AUC, clipped to [0, 1].

    DeLong's variance is nonparametric and needs no resampling, so it is cheap enough for every service and month.
    It needs two studies of each class (a variance of one value is undefined). When the classes are perfectly
    separated the variance is 0 and the interval collapses to the point: report the sample size alongside, or
    a Wilson interval of sensitivity and specificity, rather than read (1.0, 1.0) as certainty.
    """
    y, s = _labelled_scores(labels, scores)
    _require_both_classes(y, "DeLong's confidence interval", minimum=2)
    auc, variance = _delong(y, s)
    half_width = _z(level) * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half_width), min(1.0, auc + half_width)


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False positive rates, true positive rates and thresholds, one point per distinct score.

    The semantics of sklearn.metrics.roc_curve(drop_intermediate=False) from scikit-learn 1.3 on: thresholds
    decrease, the first is +inf (nothing positive, the point (0, 0)), and the point at threshold t counts the
    studies scoring >= t as positive.
    """
    y, s = _labelled_scores(labels, scores)
    _require_both_classes(y, "a ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    true_positives = np.cumsum(y)[last_of_value]
    false_positives = last_of_value + 1 - true_positives
    fpr = np.r_[0.0, false_positives / false_positives[-1]]
    tpr = np.r_[0.0, true_positives / true_positives[-1]]
    return fpr, tpr, np.r_[np.inf, s[last_of_value]]


def youden_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1, the rule for preventive chest X-ray.

    J weighs a missed pathology and a false alarm equally. The threshold is one of the observed scores (studies
    scoring >= it are positive). Among thresholds of equal J the lowest is returned: in screening, of two
    operating points equally good by J, the more sensitive one is preferred.
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    j = (tpr - fpr)[1:]
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))[-1]
    return float(thresholds[1:][best])


# --- the operating point --------------------------------------------------------------------------------------


def _ratio(numerator: int, denominator: int) -> float | None:
    """None rather than NaN or an exception: a month without positives has no sensitivity, and that is data."""
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class OperatingPoint:
    """The confusion matrix of binary decisions against the verdicts, and the rates derived from it."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float | None:
        """The share of pathologies the service flags (recall, TPR)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float | None:
        """The share of normal studies the service leaves unflagged (TNR)."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float | None:
        """The share of flagged studies that are pathologies (precision); depends on prevalence."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float | None:
        """The share of unflagged studies that are normal: what autonomous reporting of normals relies on."""
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def accuracy(self) -> float | None:
        """The share of correct decisions; misleading at low prevalence, reported for completeness."""
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)


def operating_point_from_decisions(labels: ArrayLike, decisions: ArrayLike) -> OperatingPoint:
    """The confusion matrix of the service's own binary decisions (1 = pathology flagged) against the verdicts."""
    y, d = _binary(labels, "labels"), _binary(decisions, "decisions")
    _same_length(y, d, "decisions")
    return OperatingPoint(
        tp=int(np.count_nonzero(y & d)),
        fp=int(np.count_nonzero(~y & d)),
        tn=int(np.count_nonzero(~y & ~d)),
        fn=int(np.count_nonzero(y & ~d)),
    )


def operating_point(labels: ArrayLike, scores: ArrayLike, threshold: float) -> OperatingPoint:
    """The confusion matrix at a threshold on the scores; a study scoring >= threshold is positive."""
    y, s = _labelled_scores(labels, scores)
    return operating_point_from_decisions(y, s >= threshold)


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion, e.g. sensitivity = TP of TP + FN.

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and 1 and for small
    counts, which is where sensitivities of good services and monthly counts of rare pathologies are.
    """
    if total <= 0:
        raise ValueError(f"a proportion needs a positive total, got {total}")
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be between 0 and the total {total}, got {successes}")
    z = _z(level)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)  # exactly 0, not a rounding error's 1e-17
    high = 1.0 if successes == total else min(1.0, centre + half_width)
    return low, high


# --- drift ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """A change of the positive rate (of decisions or of verdicts) between a baseline period and the current one."""

    baseline_rate: float
    current_rate: float
    z: float
    p_value: float
    alpha: float = RATE_SHIFT_ALPHA

    @property
    def difference(self) -> float:
        """Current minus baseline rate: positive when the service flags (or the population has) more pathology."""
        return self.current_rate - self.baseline_rate

    @property
    def drifted(self) -> bool:
        """Whether the change is significant at `alpha` (two-sided)."""
        return self.p_value < self.alpha


def _proportion(positives: int, total: int, name: str) -> float:
    """A rate from counts, checked: a period without studies has no rate to compare."""
    if total <= 0:
        raise ValueError(f"{name} total must be positive, got {total}")
    if not 0 <= positives <= total:
        raise ValueError(f"{name} positives must be between 0 and {total}, got {positives}")
    return positives / total


def positive_rate_shift(
    baseline_positives: int,
    baseline_total: int,
    current_positives: int,
    current_total: int,
    *,
    alpha: float = RATE_SHIFT_ALPHA,
) -> Shift:
    """The two-proportion z-test (pooled variance) of the current positive rate against the baseline.

    A service whose share of flagged studies moves while the population does not is the cheapest early sign of a
    broken input (a new scanner, a changed protocol) and needs no verdicts. The z statistic is 0 and the
    p-value 1 when both periods are all-negative or all-positive.
    """
    baseline = _proportion(baseline_positives, baseline_total, "baseline")
    current = _proportion(current_positives, current_total, "current")
    pooled = (baseline_positives + current_positives) / (baseline_total + current_total)
    standard_error = math.sqrt(pooled * (1 - pooled) * (1 / baseline_total + 1 / current_total))
    z = (current - baseline) / standard_error if standard_error else 0.0
    p_value = 2 * NormalDist().cdf(-abs(z))
    return Shift(baseline_rate=baseline, current_rate=current, z=z, p_value=p_value, alpha=alpha)


def _psi_from_counts(baseline_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI = sum over bins of (current share - baseline share) * ln(current share / baseline share)."""
    baseline = np.maximum(baseline_counts / baseline_counts.sum(), PSI_EPSILON)
    current = np.maximum(current_counts / current_counts.sum(), PSI_EPSILON)
    return float(np.sum((current - baseline) * np.log(current / baseline)))


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins (-inf, e1), [e1, e2), ..., [ek, inf): a value on an edge goes up, like score >= threshold."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def population_stability_index(baseline_scores: ArrayLike, current_scores: ArrayLike, bins: int = 10) -> float:
    """The population stability index of the current scores against the baseline's quantile bins.

    The bin edges are the baseline's quantiles (deciles by default), so each bin holds about 1/bins of the
    baseline; the outer bins are open, so scores outside the baseline's range still count. Edges repeated by
    tied scores are merged, and a bin left empty by one sample gets the share PSI_EPSILON. Above PSI_LIMIT (0.2)
    the score distribution is conventionally taken to have shifted.
    """
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    baseline = _finite(baseline_scores, "baseline scores")
    current = _finite(current_scores, "current scores")
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1)[1:-1]))
    return _psi_from_counts(_bin_counts(baseline, edges), _bin_counts(current, edges))


def ks_statistic(a: ArrayLike, b: ArrayLike) -> float:
    """The two-sample Kolmogorov-Smirnov D: the largest gap between the two empirical distribution functions.

    A complement to PSI that needs no bins; D is in [0, 1].
    """
    first = np.sort(_finite(a, "first sample"))
    second = np.sort(_finite(b, "second sample"))
    points = np.concatenate([first, second])
    cdf_first = np.searchsorted(first, points, side="right") / first.size
    cdf_second = np.searchsorted(second, points, side="right") / second.size
    return float(np.max(np.abs(cdf_first - cdf_second)))


@dataclass(frozen=True)
class ScoreDrift:
    """A change of the score distribution between a baseline period and the current one; needs no verdicts."""

    psi: float
    ks: float
    psi_limit: float = PSI_LIMIT

    @property
    def drifted(self) -> bool:
        """Whether the PSI exceeds `psi_limit` (0.2 by convention: a significant shift)."""
        return self.psi > self.psi_limit


def score_drift(
    baseline_scores: ArrayLike, current_scores: ArrayLike, *, bins: int = 10, psi_limit: float = PSI_LIMIT
) -> ScoreDrift:
    """PSI and KS of the current scores against the baseline, with the drift flag at `psi_limit`."""
    return ScoreDrift(
        psi=population_stability_index(baseline_scores, current_scores, bins),
        ks=ks_statistic(baseline_scores, current_scores),
        psi_limit=psi_limit,
    )


# --- aggregated form ------------------------------------------------------------------------------------------


class ScoreHistogram:
    """Counts of positive and negative studies per score bin: the metrics of a month of a million results
    are recomputed from thirty stored daily histograms in milliseconds instead of re-reading the rows.

    Scores must lie in [0, 1]. With `bins` = B, bin k < B holds scores in [k/B, (k+1)/B) and the extra bin B holds
    exactly 1.0, so scores on the grid k/B (e.g. probabilities rounded to 3 decimals with B = 1000) each keep their
    own bin. Histograms with the same B add up (`+`, and `sum(histograms)`), and `to_dict`/`from_dict` store them
    as lists of ints in a JSON column.
    """

    def __init__(self, bins: int = 1000) -> None:
        if bins < 1:
            raise ValueError(f"a histogram needs at least one bin, got {bins}")
        self.bins = bins
        self.positives = np.zeros(bins + 1, dtype=np.int64)
        self.negatives = np.zeros(bins + 1, dtype=np.int64)

    @classmethod
    def from_scores(cls, labels: ArrayLike, scores: ArrayLike, bins: int = 1000) -> "ScoreHistogram":
        """A histogram of one batch of results."""
        histogram = cls(bins)
        histogram.add(labels, scores)
        return histogram

    def add(self, labels: ArrayLike, scores: ArrayLike) -> None:
        """Counts a batch of results in place, e.g. one day's or one query page's."""
        y, s = _labelled_scores(labels, scores)
        if s.min() < 0 or s.max() > 1:
            raise ValueError(f"histogram scores must lie in [0, 1], got [{s.min()}, {s.max()}]")
        index = np.floor(s * self.bins + _GRID_TOLERANCE).astype(np.int64)
        self.positives += np.bincount(index[y], minlength=self.bins + 1)
        self.negatives += np.bincount(index[~y], minlength=self.bins + 1)

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        if other.bins != self.bins:
            raise ValueError(f"histograms of {self.bins} and {other.bins} bins cannot be merged")
        merged = ScoreHistogram(self.bins)
        merged.positives = self.positives + other.positives
        merged.negatives = self.negatives + other.negatives
        return merged

    def __radd__(self, other: object) -> "ScoreHistogram":
        """Lets the builtin sum() start from 0."""
        if other == 0:
            return self + ScoreHistogram(self.bins)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        return (
            self.bins == other.bins
            and np.array_equal(self.positives, other.positives)
            and np.array_equal(self.negatives, other.negatives)
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"ScoreHistogram(bins={self.bins}, positives={self.positive_count}, negatives={self.negative_count})"

    @property
    def positive_count(self) -> int:
        return int(self.positives.sum())

    @property
    def negative_count(self) -> int:
        return int(self.negatives.sum())

    def to_dict(self) -> dict[str, int | list[int]]:
        """Plain ints for a JSON column; `from_dict` reads it back."""
        return {"bins": self.bins, "positives": self.positives.tolist(), "negatives": self.negatives.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreHistogram":
        """The histogram stored by `to_dict`, checked, since a JSON column accepts anything."""
        histogram = cls(int(data["bins"]))
        for name in ("positives", "negatives"):
            counts = np.asarray(data[name], dtype=np.int64)
            if counts.shape != (histogram.bins + 1,) or (counts < 0).any():
                raise ValueError(f"{name} must be {histogram.bins + 1} non-negative counts")
            setattr(histogram, name, counts)
        return histogram

    def _require_both_classes(self, what: str) -> None:
        if not self.positive_count or not self.negative_count:
            raise ValueError(
                f"{what} needs positive and negative labels, "
                f"got {self.positive_count} positive and {self.negative_count} negative"
            )

    def auc(self) -> float:
        """The trapezoidal area under the ROC curve with one point per bin edge.

        A positive and a negative in the same bin count one half, as if tied. So it equals the exact AUC when each
        bin holds one distinct score (scores on the grid) and is otherwise off by at most `auc_error_bound()`.
        """
        self._require_both_classes("AUC")
        negatives_below = np.cumsum(self.negatives) - self.negatives
        wins = np.sum(self.positives * (negatives_below + self.negatives / 2))
        return float(wins / (self.positive_count * self.negative_count))

    def auc_error_bound(self) -> float:
        """The largest possible |auc() - exact AUC|: half the share of positive-negative pairs sharing a bin.

        Only such pairs can be ordered differently by the exact scores; each moves the AUC by at most
        1 / (2 * positives * negatives). The counts cannot tell whether the scores were on the grid, where the
        pairs sharing a bin are true ties and the error is 0, so the bound assumes they were not. With 1000 bins
        and smooth score distributions it is typically below 1e-3.
        """
        self._require_both_classes("the AUC error bound")
        shared = np.sum(self.positives * self.negatives)
        return float(shared / (2 * self.positive_count * self.negative_count))

    def _edge(self, threshold: float) -> int:
        """The bin whose lower edge is the threshold: only thresholds on the grid split the counts exactly."""
        position = threshold * self.bins
        edge = round(position)
        if not 0 <= threshold <= 1 or abs(position - edge) > _GRID_TOLERANCE * max(1.0, position):
            raise ValueError(f"threshold {threshold} is not on the 1/{self.bins} grid of this histogram in [0, 1]")
        return edge

    def operating_point(self, threshold: float) -> OperatingPoint:
        """The confusion matrix at a threshold on the bin grid (a study scoring >= threshold is positive).

        Exact for any scores, because every bin lies wholly on one side of a grid threshold; a threshold off the
        grid raises ValueError rather than guessing on which side a bin's studies scored.
        """
        edge = self._edge(threshold)
        tp, fn = int(self.positives[edge:].sum()), int(self.positives[:edge].sum())
        fp, tn = int(self.negatives[edge:].sum()), int(self.negatives[:edge].sum())
        return OperatingPoint(tp=tp, fp=fp, tn=tn, fn=fn)

    def psi_against(self, baseline: "ScoreHistogram", bins: int = 10) -> float:
        """The PSI of these scores (labelled or not alike) against a baseline histogram's quantile bins.

        As `population_stability_index`, but each quantile edge is moved down to the lower edge of the grid bin
        it falls in, so the PSI of a histogram approximates that of the raw scores to within a grid bin's share.
        """
        if bins < 2:
            raise ValueError(f"PSI needs at least 2 bins, got {bins}")
        if baseline.bins != self.bins:
            raise ValueError(f"histograms of {self.bins} and {baseline.bins} bins cannot be compared")
        reference, current = baseline.positives + baseline.negatives, self.positives + self.negatives
        if not reference.sum() or not current.sum():
            raise ValueError("PSI needs scores in both histograms")
        cumulative = np.cumsum(reference)
        quantiles = np.linspace(0, 1, bins + 1)[1:-1] * cumulative[-1]
        starts = np.unique(np.r_[0, np.searchsorted(cumulative, quantiles, side="left")])
        return _psi_from_counts(np.add.reduceat(reference, starts), np.add.reduceat(current, starts))


# --- the chart ------------------------------------------------------------------------------------------------


def _auc_label(labels: np.ndarray, scores: np.ndarray) -> str:
    """The legend entry of the curve; the interval is left out when a class has a single study."""
    label = f"ROC-кривая, AUC {roc_auc(labels, scores):.3f}"
    if min(labels.sum(), (~labels).sum()) >= 2:
        low, high = auc_confidence_interval(labels, scores)
        label += f" (95% ДИ {low:.3f}–{high:.3f})"
    return label


def _mark_operating_point(axes: "Axes", labels: np.ndarray, scores: np.ndarray, threshold: float) -> None:
    """The service's operating point as a dot on the curve, with its sensitivity and specificity."""
    point = operating_point(labels, scores, threshold)
    sensitivity, specificity = point.sensitivity, point.specificity
    label = f"Рабочий порог {threshold:g}: чувствительность {sensitivity:.2f}, специфичность {specificity:.2f}"
    axes.plot([1 - specificity], [sensitivity], "o", color="tab:red", markersize=8, label=label, zorder=3)


def roc_png(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    title: str,
    operating_threshold: float | None = None,
) -> bytes:
    """A PNG of the ROC curve with the chance diagonal, the AUC and its DeLong 95% CI, and the operating point.

    Drawn on a standalone Figure with the Agg canvas, not pyplot, so concurrent workers share no global figure
    state and no display is needed. The default font, DejaVu Sans, has Cyrillic, so titles may be in Russian.
    """
    y, s = _labelled_scores(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, color="tab:blue", linewidth=2, label=_auc_label(y, s))
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="Случайное угадывание")
    if operating_threshold is not None:
        _mark_operating_point(axes, y, s, operating_threshold)
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − специфичность", ylabel="Чувствительность", aspect="equal")
    axes.set_title(title, wrap=True)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
