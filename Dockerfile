FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY scheduler_project ./scheduler_project
COPY schedules ./schedules
COPY executions ./executions
RUN pip install .

COPY manage.py Procfile ./
# collectstatic needs settings but no database; a throwaway key satisfies the production guard.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

RUN useradd --create-home scheduler
USER scheduler
EXPOSE 8000 5555
CMD ["gunicorn", "scheduler_project.wsgi:application", "--bind", "0.0.0.0:8000"]
