"""What AI analysis tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent inside the organization's scope and the transaction that records the end of an analysis, with the
# analysis row locked, so a listener's writes commit (or roll back) with it. Argument: analysis. The
# `billing` app charges succeeded analyses.
analysis_finished = Signal()

# Sent once per study, inside the transaction that routes it (to services, or to none), so a listener counts
# each study once even when a crashed completion task re-runs. Argument: study_id. The `stats` app counts
# studies received and not routed.
study_routed = Signal()

# Sent inside the organization's scope for each delivered result withdrawn by a recall of its model version
# (inference.quality.versions). Arguments: analysis, reason. The `billing` app reverses its charge.
analysis_recalled = Signal()

# Sent inside the transaction that records a radiologist's review of a result. Argument: review. The `stats`
# app counts reviews and disagreements.
review_recorded = Signal()
