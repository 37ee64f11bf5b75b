"""What billing tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent in the transaction that makes a ledger line count towards money: a charge billed at once or released
# from its hold, or a reversal. Arguments: service (the BillableService), and counted=True when the charge's
# amount is already in the daily statistics (analysis_bill counts it in its own SQL call, to keep every
# analysis's transaction short). The `stats` app adds up the other billed amounts.
service_billed = Signal()
