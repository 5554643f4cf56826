FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are collected into the image.  The values below exist only so
# the production settings load during the build; none of them is kept.
RUN DJANGO_SETTINGS_MODULE=integrations_site.settings.production \
    DJANGO_SECRET_KEY=collectstatic-at-build-time-only \
    FERNET_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    DJANGO_ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput \
 && rm -f /tmp/build.sqlite3 \
 && mkdir -p var/log \
 && chown -R app:app var

USER app

ENV DJANGO_SETTINGS_MODULE=integrations_site.settings.production
EXPOSE 8000

CMD ["gunicorn", "integrations_site.wsgi:application", "-c", "gunicorn.conf.py", "--access-logfile", "-"]
