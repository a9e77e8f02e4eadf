"""The site's front page and icon: `/` says what this service is and links to where people work (the admin,
the API docs, Flower, health), so the admin's "View site" and a bare visit land somewhere useful; and
`/favicon.ico`, which browsers ask for on every page, answers with the icon instead of a logged 404."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_safe

#: The icon, a static file (whitenoise serves it with a long cache lifetime).
FAVICON = "operations/favicon.svg"


@require_safe
def landing_view(request: HttpRequest) -> HttpResponse:
    """Links only: nothing about triggers or runs is shown to a visitor who has not signed in."""
    return render(request, "operations/landing.html", {"flower_url": settings.FLOWER_URL})


@require_safe
def favicon_view(request: HttpRequest) -> HttpResponse:
    return redirect(static(FAVICON), permanent=True)
