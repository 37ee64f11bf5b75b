from django.urls import path

from medai.stats.views import StatsView

urlpatterns = [path("stats", StatsView.as_view(), name="stats")]
