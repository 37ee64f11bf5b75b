"""What AI analysis tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent inside the organization's scope and the transaction that records the end of an analysis, with the
# analysis row locked, so a listener's writes commit (or roll back) with it. Argument: analysis. The
# `billing` app charges succeeded analyses.
analysis_finished = Signal()
