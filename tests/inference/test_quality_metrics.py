"""Quality metrics of AI services (inference.quality.metrics) against scikit-learn, brute force and published values.

Pure: no database or servers. Run alone with
    .venv/bin/python -m pytest tests/inference/test_quality_metrics.py -q -p no:django --noconftest
"""

import json
import math
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from inference.quality import metrics as m

ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(6)


def _sample(seed: int, n: int = 400, decimals: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~30% prevalence and informative scores in [0, 1], rounded so that many scores tie."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    return labels, (np.round(scores, decimals) if decimals is not None else scores)


def _delong_by_definition(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) from the m x n comparison matrix: an independent reference."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / positive.size + v01.var(ddof=1) / negative.size


# --- known in advance -----------------------------------------------------------------------------------------


def test_a_perfect_scorer_has_auc_1_and_full_sensitivity_and_specificity():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    assert m.roc_auc(labels, scores) == 1.0
    point = m.operating_point(labels, scores, 0.5)
    assert (point.sensitivity, point.specificity, point.ppv, point.npv, point.accuracy) == (1, 1, 1, 1, 1)
    assert m.youden_threshold(labels, scores) == 0.7


def test_a_reversed_scorer_has_auc_0_and_a_constant_one_half():
    labels = [0, 0, 0, 1, 1, 1]
    assert m.roc_auc(labels, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]) == 0.0
    assert m.roc_auc(labels, [0.5] * 6) == 0.5
    fpr, tpr, thresholds = m.roc_curve(labels, [0.5] * 6)
    assert fpr.tolist() == [0, 1] and tpr.tolist() == [0, 1] and thresholds.tolist() == [np.inf, 0.5]


# --- against scikit-learn -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_auc_equals_scikit_learn_with_and_without_ties(seed, decimals):
    labels, scores = _sample(seed, decimals=decimals)
    assert m.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_equals_scikit_learn_without_dropping_points(seed):
    labels, scores = _sample(seed, decimals=2)
    ours = m.roc_curve(labels, scores)
    theirs = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    for got, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.73, 1.0])
def test_operating_point_equals_the_confusion_matrix(seed, threshold):
    labels, scores = _sample(seed)
    decisions = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, decisions, labels=[0, 1]).ravel().tolist()
    point = m.operating_point(labels, scores, threshold)
    assert (point.tp, point.fp, point.tn, point.fn) == (tp, fp, tn, fn)
    assert point == m.operating_point_from_decisions(labels, decisions)
    assert point.sensitivity == pytest.approx(tp / (tp + fn))
    assert point.specificity == pytest.approx(tn / (tn + fp))
    assert point.accuracy == pytest.approx((tp + tn) / labels.size)
    assert point.ppv == (pytest.approx(tp / (tp + fp)) if tp + fp else None)
    assert point.npv == (pytest.approx(tn / (tn + fn)) if tn + fn else None)


def test_rates_with_a_zero_denominator_are_none():
    point = m.operating_point_from_decisions([0, 0, 0], [0, 0, 1])
    assert (point.tp, point.fp, point.tn, point.fn) == (0, 1, 2, 0)
    assert point.sensitivity is None and point.npv == 1.0 and point.ppv == 0.0
    assert point.specificity == pytest.approx(2 / 3)
    assert m.OperatingPoint(0, 0, 0, 0).accuracy is None


# --- DeLong's interval ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [1, None])
def test_fast_delong_equals_delong_by_definition(seed, decimals):
    labels, scores = _sample(seed, n=300, decimals=decimals)
    auc, variance = m._delong(labels.astype(bool), scores)
    expected_auc, expected_variance = _delong_by_definition(labels, scores)
    assert auc == pytest.approx(expected_auc, abs=1e-12)
    assert variance == pytest.approx(expected_variance, rel=1e-10)
    low, high = m.auc_confidence_interval(labels, scores)
    half_width = 1.959963984540054 * math.sqrt(expected_variance)
    assert (low, high) == pytest.approx((expected_auc - half_width, expected_auc + half_width), abs=1e-12)


def test_delong_on_hanley_and_mcneils_published_ct_ratings():
    """Hanley & McNeil, Radiology 1982;143:29, table 1: five-point ratings of 109 CT images, AUC 0.893.

    Their published SE, 0.032, comes from their exponential approximation, not DeLong's estimator,
    so the SE agrees loosely (DeLong's here is 0.0307)."""
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    labels = np.r_[np.zeros(normal.size), np.ones(abnormal.size)]
    scores = np.r_[normal, abnormal].astype(float)
    auc = m.roc_auc(labels, scores)
    assert round(auc, 3) == 0.893
    low, high = m.auc_confidence_interval(labels, scores)
    assert (high - low) / (2 * 1.96) == pytest.approx(0.032, abs=0.002)
    assert low < auc < high


def test_delong_standard_error_agrees_with_the_bootstrap():
    labels, scores = _sample(7, n=300, decimals=2)
    rng = np.random.default_rng(8)
    resampled = rng.integers(0, labels.size, size=(2000, labels.size))
    aucs = [m.roc_auc(labels[rows], scores[rows]) for rows in resampled]  # equal to scikit-learn's, tested above
    low, high = m.auc_confidence_interval(labels, scores)
    assert (high - low) / (2 * 1.959964) == pytest.approx(np.std(aucs, ddof=1), rel=0.15)


def test_the_interval_contains_the_auc_and_narrows_with_n():
    widths = []
    for n in (100, 1_000, 10_000):
        labels, scores = _sample(3, n=n, decimals=None)
        low, high = m.auc_confidence_interval(labels, scores)
        assert low < m.roc_auc(labels, scores) < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.3)  # width ~ 1 / sqrt(n)


def test_the_interval_widens_with_the_level_and_stays_in_0_1():
    labels, scores = _sample(4, n=200)
    low90, high90 = m.auc_confidence_interval(labels, scores, level=0.9)
    low99, high99 = m.auc_confidence_interval(labels, scores, level=0.99)
    assert low99 < low90 and high90 < high99
    assert m.auc_confidence_interval([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.9, 0.8, 0.3, 0.25])[1] == 1.0
    assert m.auc_confidence_interval([0, 0, 1, 1], [0.1, 0.2, 0.9, 0.8]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 positive"):
        m.auc_confidence_interval([0, 0, 1], [0.1, 0.2, 0.9])
    with pytest.raises(ValueError, match="level"):
        m.auc_confidence_interval(labels, scores, level=95)


# --- Youden's threshold ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_youden_threshold_maximises_j_by_brute_force(seed):
    labels, scores = _sample(seed, n=200, decimals=2)

    def j(threshold):
        point = m.operating_point(labels, scores, threshold)
        return point.sensitivity + point.specificity - 1

    by_threshold = {float(t): j(t) for t in np.unique(scores)}
    best = max(by_threshold.values())
    chosen = m.youden_threshold(labels, scores)
    assert by_threshold[chosen] == pytest.approx(best, abs=1e-12)
    assert chosen == min(t for t, value in by_threshold.items() if value > best - 1e-12)


def test_youden_ties_go_to_the_more_sensitive_threshold():
    # At 0.6: sensitivity 1/2, specificity 1 (J 0.5); at 0.4: sensitivity 1, specificity 1/2 (J 0.5).
    labels = [0, 0, 1, 1]
    scores = [0.2, 0.5, 0.4, 0.6]
    assert m.youden_threshold(labels, scores) == 0.4


# --- Wilson ---------------------------------------------------------------------------------------------------


def test_wilson_interval_equals_the_hand_computed_values():
    # 8 of 10, z = 1.959964, z² = 3.841459: centre (0.8 + z²/20) / (1 + z²/10) = 0.716740,
    # half-width z * sqrt(0.8 * 0.2 / 10 + z²/400) / (1 + z²/10) = 0.226578; 95% CI 0.4902-0.9433.
    assert m.wilson_interval(8, 10) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    # 0 of 10: the upper bound is z² / (n + z²).
    low, high = m.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(3.841459 / 13.841459, abs=1e-6)
    assert m.wilson_interval(10, 10)[1] == 1.0
    for successes, total in ((0, 0), (11, 10), (-1, 10)):
        with pytest.raises(ValueError):
            m.wilson_interval(successes, total)


# --- drift ----------------------------------------------------------------------------------------------------


def test_positive_rate_shift_equals_the_hand_computed_z_test():
    # Pooled p = 250 / 2000 = 0.125; SE = sqrt(0.125 * 0.875 * (1/1000 + 1/1000)) = 0.0147902; z = 0.05 / SE.
    shift = m.positive_rate_shift(100, 1000, 150, 1000)
    z = 0.05 / math.sqrt(0.125 * 0.875 * 0.002)
    assert shift.z == pytest.approx(z) and shift.z == pytest.approx(3.3806, abs=1e-4)
    assert shift.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert shift.difference == pytest.approx(0.05) and shift.drifted
    assert not m.positive_rate_shift(100, 1000, 110, 1000).drifted
    assert m.positive_rate_shift(100, 1000, 80, 1000).z < 0
    assert not m.positive_rate_shift(100, 1000, 150, 1000, alpha=0.0001).drifted
    same = m.positive_rate_shift(0, 50, 0, 70)
    assert (same.z, same.p_value, same.drifted) == (0.0, 1.0, False)
    with pytest.raises(ValueError, match="current total"):
        m.positive_rate_shift(1, 10, 0, 0)


def test_psi_equals_the_hand_computed_value():
    # Two bins split at the baseline median 0.5: baseline shares 0.5 / 0.5, current 0.8 / 0.2.
    baseline = np.arange(10) / 10 + 0.05
    current = np.r_[np.full(8, 0.1), np.full(2, 0.9)]
    expected = 0.3 * math.log(0.8 / 0.5) + 0.3 * math.log(0.5 / 0.2)
    assert m.population_stability_index(baseline, current, bins=2) == pytest.approx(expected)


def test_psi_is_zero_for_one_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(1)
    baseline = rng.beta(2, 5, 20_000)
    assert m.population_stability_index(baseline, baseline) == 0.0
    assert m.population_stability_index(baseline, rng.beta(2, 5, 20_000)) < 0.01
    assert m.population_stability_index(baseline, rng.beta(3, 4, 20_000)) > 0.2
    # All current scores beyond the baseline's range: the empty bins get the epsilon share, not infinity.
    assert math.isfinite(m.population_stability_index(baseline, np.full(100, 1.0)))
    # Heavy ties merge the repeated decile edges.
    tied = np.r_[np.zeros(600), rng.random(400)]
    assert m.population_stability_index(tied, tied) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ks_statistic_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.random(150), 1)
    b = np.round(rng.random(90) ** 1.5, 1)
    brute = max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in np.r_[a, b])
    assert m.ks_statistic(a, b) == pytest.approx(brute, abs=1e-12)
    assert m.ks_statistic(a, a) == 0.0
    assert m.ks_statistic([0.1, 0.2], [0.8, 0.9]) == 1.0


def test_score_drift_flags_a_psi_above_its_limit():
    rng = np.random.default_rng(2)
    baseline = rng.beta(2, 5, 5_000)
    drift = m.score_drift(baseline, rng.beta(4, 3, 5_000))
    assert drift.drifted and drift.psi > 0.2 and drift.ks > 0.3
    stable = m.score_drift(baseline, rng.beta(2, 5, 5_000))
    assert not stable.drifted and stable.psi_limit == 0.2
    assert m.score_drift(baseline, rng.beta(2, 5, 5_000), psi_limit=0.0).drifted


# --- the aggregated form --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_auc_is_exact_for_scores_on_the_grid(seed):
    labels, scores = _sample(seed, n=2_000, decimals=3)  # on the 1/1000 grid, 0.0 and 1.0 included
    histogram = m.ScoreHistogram.from_scores(labels, scores)
    assert histogram.auc() == pytest.approx(m.roc_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_auc_off_the_grid_is_within_its_bound(seed):
    labels, scores = _sample(seed, n=2_000, decimals=None)
    for bins in (10, 100, 1000):
        histogram = m.ScoreHistogram.from_scores(labels, scores, bins=bins)
        assert abs(histogram.auc() - m.roc_auc(labels, scores)) <= histogram.auc_error_bound() + 1e-12
    assert m.ScoreHistogram.from_scores(labels, scores, bins=1000).auc_error_bound() < 1e-3


def test_decimal_scores_land_in_the_bin_they_read():
    histogram = m.ScoreHistogram.from_scores([1, 1, 0], [0.29, 0.57, 1.0], bins=100)
    assert histogram.positives[[29, 57]].tolist() == [1, 1] and histogram.negatives[100] == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_operating_point_is_exact_for_thresholds_on_the_grid(seed):
    labels, scores = _sample(seed, n=1_000, decimals=None)
    histogram = m.ScoreHistogram.from_scores(labels, scores)
    for threshold in (0.0, 0.29, 0.35, 0.5, 0.731, 1.0):
        assert histogram.operating_point(threshold) == m.operating_point(labels, scores, threshold)
    with pytest.raises(ValueError, match="not on the 1/1000 grid"):
        histogram.operating_point(0.3505)
    with pytest.raises(ValueError, match="grid"):
        histogram.operating_point(1.5)


def test_merged_daily_histograms_equal_one_built_on_the_union():
    days = [_sample(seed, n=500, decimals=None) for seed in range(5)]
    merged = sum(m.ScoreHistogram.from_scores(labels, scores) for labels, scores in days)
    labels, scores = (np.concatenate(parts) for parts in zip(*days, strict=True))
    assert merged == m.ScoreHistogram.from_scores(labels, scores)
    incremental = m.ScoreHistogram()
    for day in days:
        incremental.add(*day)
    assert incremental == merged
    assert merged.positive_count + merged.negative_count == 2_500
    assert m.ScoreHistogram.from_scores(*days[0]) + m.ScoreHistogram.from_scores(*days[1]) != merged
    with pytest.raises(ValueError, match="cannot be merged"):
        m.ScoreHistogram(10) + m.ScoreHistogram(100)


def test_histogram_round_trips_through_json():
    histogram = m.ScoreHistogram.from_scores(*_sample(0, decimals=None), bins=50)
    stored = json.loads(json.dumps(histogram.to_dict()))
    assert all(type(count) is int for count in stored["positives"] + stored["negatives"])
    restored = m.ScoreHistogram.from_dict(stored)
    assert restored == histogram and restored.auc() == histogram.auc()
    with pytest.raises(ValueError, match="51 non-negative counts"):
        m.ScoreHistogram.from_dict({**stored, "negatives": stored["negatives"][:-1]})


def test_histogram_psi():
    rng = np.random.default_rng(3)
    baseline_scores, current_scores = rng.beta(2, 5, 20_000), rng.beta(3, 4, 20_000)
    unlabelled = np.zeros(20_000, dtype=int)  # PSI ignores labels
    baseline = m.ScoreHistogram.from_scores(unlabelled, baseline_scores)
    current = m.ScoreHistogram.from_scores(unlabelled, current_scores)
    assert baseline.psi_against(baseline) == 0.0
    assert current.psi_against(baseline) > 0.2
    expected = m.population_stability_index(baseline_scores, current_scores)
    assert current.psi_against(baseline) == pytest.approx(expected, rel=0.05)


def test_histogram_rejects_what_it_cannot_count():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.ScoreHistogram().add([0, 1], [0.5, 1.2])
    with pytest.raises(ValueError, match="positive and negative"):
        m.ScoreHistogram.from_scores([1, 1], [0.5, 0.6]).auc()
    with pytest.raises(ValueError, match="both histograms"):
        m.ScoreHistogram().psi_against(m.ScoreHistogram())


# --- input checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([], [], "empty"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "got 3 positive and 0 negative"),
        ([0, 0], [0.1, 0.2], "got 0 positive and 2 negative"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "finite"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_wrong_input_raises_a_clear_error(labels, scores, message):
    def chart(labels, scores):
        return m.roc_png(labels, scores, title="")

    for metric in (m.roc_auc, m.roc_curve, m.youden_threshold, m.auc_confidence_interval, chart):
        with pytest.raises(ValueError, match=message):
            metric(labels, scores)


def test_operating_points_need_no_second_class():
    point = m.operating_point([1, 1], [0.2, 0.8], 0.5)
    assert (point.sensitivity, point.specificity) == (0.5, None)
    with pytest.raises(ValueError, match="differ in length"):
        m.operating_point_from_decisions([1, 0], [1])
    with pytest.raises(ValueError, match="decisions must be 0/1"):
        m.operating_point_from_decisions([1, 0], [0.5, 1])


def test_the_module_imports_neither_scikit_learn_nor_scipy():
    code = "import sys, inference.quality.metrics; print(sorted({'sklearn', 'scipy', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- the chart ------------------------------------------------------------------------------------------------


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_roc_png_is_a_png_of_sensible_size_with_a_cyrillic_title():
    labels, scores = _sample(0, n=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a glyph missing from the font warns
        png = m.roc_png(labels, scores, title="Флюорография: сервис «Лёгкие», март", operating_threshold=0.5)
    assert _png_size(png) == (600, 600)
    assert 10_000 < len(png) < 500_000


def test_roc_png_without_an_interval_or_an_operating_point():
    png = m.roc_png([0, 0, 1], [0.1, 0.4, 0.35], title="One positive: no DeLong interval")
    assert _png_size(png) == (600, 600)
