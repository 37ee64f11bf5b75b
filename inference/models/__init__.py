"""Triton's model repository: one folder per model, in Triton's layout (`config.pbtxt`, `1/model.py`).

`medai up` and the test fixtures point tritonserver at this folder. Every model here is a reference
model written by this project, not a medical device.
"""

from pathlib import Path

MODEL_REPOSITORY = Path(__file__).resolve().parent
