"""Two kinds of model meet here.

- The Django models of the `inference` app: they are written in `inference/records.py` (and those of
  quality monitoring in `inference/quality/records.py`) and imported
  below, because Django looks for them in this module.
- Triton's model repository: the folders beside this file, one per model, in Triton's layout
  (`config.pbtxt`, `1/model.py`). `medai up` and the test fixtures point tritonserver at this folder
  (`inference.triton.MODEL_REPOSITORY`). Every model here is a reference model written by this
  project, not a medical device.
"""

from inference.quality.records import (
    Defect,
    QualityAlert,
    Review,
    ReviewSample,
    ServiceMonthMetrics,
    TechnicalTest,
)
from inference.records import AIService, Analysis, StudyKind, WebhookDelivery, WebhookEndpoint, WorklistEntry

__all__ = ["AIService", "Analysis", "Defect", "QualityAlert", "Review", "ReviewSample", "ServiceMonthMetrics",
           "StudyKind", "TechnicalTest", "WebhookDelivery", "WebhookEndpoint", "WorklistEntry"]
