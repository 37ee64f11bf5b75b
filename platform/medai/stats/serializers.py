import datetime as dt

from rest_framework import serializers

from medai.stats.selectors import GROUPS, LEVELS, STATS, latest_local_day

DEFAULT_DAYS = 30


class StatsQuerySerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=LEVELS, required=False,
                                    help_text="national, region или organization; по умолчанию уровень пользователя")
    region = serializers.CharField(required=False, help_text="Код региона (уровень region), например RU-MOW")
    organization = serializers.CharField(required=False, help_text="Код МО в ОМС (уровень organization)")
    modality = serializers.ListField(child=serializers.CharField(max_length=16), required=False,
                                     help_text="Только эти модальности (первая модальность исследования), например DX")
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    group_by = serializers.MultipleChoiceField(choices=list(GROUPS), required=False)
    stats = serializers.MultipleChoiceField(choices=STATS, required=False)

    def validate(self, data: dict) -> dict:
        data.setdefault("date_to", latest_local_day())
        data.setdefault("date_from", data["date_to"] - dt.timedelta(days=DEFAULT_DAYS))
        if data["date_to"] < data["date_from"]:
            raise serializers.ValidationError("date_to раньше date_from.")
        data["group_by"] = [name for name in GROUPS if name in data.get("group_by", ())]
        data["stats"] = [name for name in STATS if name in data.get("stats", ())] or list(STATS)
        return data
