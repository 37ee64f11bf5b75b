"""WADO-RS (placeholder until written)."""
from medai.dicomweb.base import DicomWebView


class RetrieveStudy(DicomWebView):
    pass


class RetrieveSeries(DicomWebView):
    pass


class RetrieveInstance(DicomWebView):
    pass


class Metadata(DicomWebView):
    pass


class Rendered(DicomWebView):
    pass


class Frames(DicomWebView):
    pass


class Bulkdata(DicomWebView):
    pass
