FROM python:3.11-slim

# PYTHONPATH=/app: the code runs from the source tree (settings find templates/ and var/ beside it), not
# from the copy `pip install .` leaves in site-packages; the install is there for the dependencies.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
WORKDIR /app

COPY pyproject.toml README.md manage.py Procfile ./
COPY scheduler_project ./scheduler_project
COPY schedules ./schedules
COPY executions ./executions
COPY operations ./operations
COPY notifications ./notifications
COPY toolkit ./toolkit
COPY templates ./templates
RUN pip install .

# collectstatic needs settings but no database; a throwaway key satisfies the production guard.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

RUN useradd --create-home scheduler && mkdir -p /app/var && chown scheduler /app/var
USER scheduler
EXPOSE 8000 5555
CMD ["gunicorn", "scheduler_project.wsgi:application", "--bind", "0.0.0.0:8000"]
