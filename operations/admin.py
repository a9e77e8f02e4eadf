"""The dashboard joins the admin site here, where the admin autodiscovers its modules."""

from django.contrib import admin

from operations import dashboard

dashboard.install(admin.site)
