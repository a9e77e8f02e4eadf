#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")
    # From a checkout, `manage.py makemigrations`/`shell` should work with no environment at all; production
    # sets DEBUG=0 (compose does) and then SECRET_KEY is required as before. Web and workers never run this.
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
