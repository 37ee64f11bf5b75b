"""What billing tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent in the transaction that makes a ledger line count towards money: a charge billed at once or released
# from its hold, or a reversal. Argument: service (the BillableService). The `stats` app adds up billed amounts.
service_billed = Signal()
