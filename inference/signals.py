"""What AI analysis tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent inside the organization's scope and the transaction that records the end of an analysis, with the
# analysis row locked, so a listener's writes commit (or roll back) with it. Argument: analysis. The
# `billing` app charges succeeded analyses.
analysis_finished = Signal()

# Sent inside the organization's scope for each delivered result withdrawn by a recall of its model version
# (inference.quality.versions). Arguments: analysis, reason. The `billing` app reverses its charge.
analysis_recalled = Signal()

# Sent inside the transaction that records a radiologist's review of a result. Argument: review. The `stats`
# app counts reviews and disagreements.
review_recorded = Signal()
