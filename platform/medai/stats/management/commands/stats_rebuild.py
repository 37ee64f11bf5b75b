import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from medai.stats.rebuild import stats_rebuild


class Command(BaseCommand):
    help = "Пересчитать статистику за диапазон дней из исходных записей."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from", dest="date_from", required=True, type=dt.date.fromisoformat)
        parser.add_argument("--to", dest="date_to", required=True, type=dt.date.fromisoformat)

    def handle(self, *args, date_from: dt.date, date_to: dt.date, **options) -> None:
        if date_to < date_from:
            raise CommandError("Дата окончания раньше даты начала.")
        rows = stats_rebuild(date_from=date_from, date_to=date_to)
        self.stdout.write(f"Статистика за {date_from}..{date_to} пересчитана: {rows} строк.")
