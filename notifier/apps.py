from django.apps import AppConfig


class NotifierConfig(AppConfig):
    name = "notifier"
    verbose_name = "Notifier backplane"
