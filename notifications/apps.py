from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Notifications: who wants to hear about which trigger events, by email or signed webhook, and the log
    of every delivery."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The lower layers emit through toolkit.events; this app is the listener above them.
        # `tasks` is imported to register them in every process (not only in workers that autodiscover),
        # so a signature sent by name resolves to the task, and honours eager mode in tests.
        from notifications import listener, tasks  # noqa: F401
        from toolkit import events

        events.listen(listener.LISTENER)
