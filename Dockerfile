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
# the production settings load during the build (they refuse weak keys and a
# loopback callback URL); they are thrown away with the build step.
RUN DJANGO_SETTINGS_MODULE=integrations_site.settings.production \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    FERNET_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DJANGO_ALLOWED_HOSTS=localhost \
    OAUTH_CALLBACK_URL=https://build.invalid/api/v1/oauth/callback \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput \
 && rm -f /tmp/build.sqlite3 \
 && mkdir -p var/log \
 && chown -R app:app var

USER app

ENV DJANGO_SETTINGS_MODULE=integrations_site.settings.production
EXPOSE 8000

CMD ["gunicorn", "integrations_site.wsgi:application", "-c", "gunicorn.conf.py", "--access-logfile", "-"]
