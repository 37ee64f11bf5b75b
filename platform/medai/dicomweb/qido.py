"""QIDO-RS (placeholder until written)."""
from medai.dicomweb.base import DicomWebView


class SearchStudies(DicomWebView):
    pass


class SearchSeries(DicomWebView):
    pass


class SearchInstances(DicomWebView):
    pass
