"""Server-rendered pages of quality monitoring (the JSON API is under /api/v1/, in inference/urls.py)."""

from django.urls import path

from inference.quality.pages import maturity_csv_download, maturity_page

urlpatterns = [
    path("maturity", maturity_page, name="maturity-matrix"),
    path("maturity.csv", maturity_csv_download, name="maturity-matrix-csv"),
]
