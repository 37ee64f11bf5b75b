from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "medai.accounts"
    label = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from medai.accounts import schema  # noqa: F401 - registers the OpenAPI security scheme
