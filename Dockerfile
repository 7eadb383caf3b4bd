FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/wanbot.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install . \
    && useradd --create-home --uid 10001 wanbot \
    && mkdir /data && chown wanbot:wanbot /data

USER wanbot
VOLUME ["/data"]
CMD ["wanbot", "run"]
