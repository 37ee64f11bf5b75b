"""What the archive tells the rest of the platform, without knowing who listens."""

from django.dispatch import Signal

# Sent once per study, inside the organization's scope, when the study is complete (quiet time or an
# explicit POST .../complete). Arguments: study_id, organization_id. The `inference` app routes it.
study_completed = Signal()
