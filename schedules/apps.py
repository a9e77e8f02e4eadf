from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    """Triggers: when a workflow should start, in which zone, and the beat entries that fire them."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "schedules"
    verbose_name = "Schedules"
