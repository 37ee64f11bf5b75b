"""Where Triton finds the reference models."""

from pathlib import Path

MODEL_REPOSITORY = Path(__file__).resolve().parent / "models"
