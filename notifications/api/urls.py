"""`/api/v1/notifications/` routes (trailing slash optional, as for every API route)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from notifications.api import views

router = SimpleRouter()
router.trailing_slash = "/?"
router.register(
    "notifications/subscriptions", views.SubscriptionViewSet, basename="notification-subscription"
)
router.register("notifications/deliveries", views.DeliveryViewSet, basename="notification-delivery")

urlpatterns = router.urls
