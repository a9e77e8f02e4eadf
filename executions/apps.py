from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    """Executions: one row per run that was due, its attempts, and the launchers that start workflows."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "executions"
    verbose_name = "Executions"
