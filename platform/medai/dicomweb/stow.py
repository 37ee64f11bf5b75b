"""STOW-RS (placeholder until written)."""
from medai.dicomweb.base import DicomWebView


class Store(DicomWebView):
    pass
