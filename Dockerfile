# The CTI service (a node). docker-compose.yml runs two of them with two Asterisks (asterisk-a,
# asterisk-b), PostgreSQL and Redis; scripts/pbx is the sandbox Asterisk on a Debian host.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# espeak-ng + sox render the phrase library's audio (8 kHz WAV) when no recording exists
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Only what the service reads at run time (no .venv, tests or caches).
COPY pyproject.toml README.md ./
COPY cti ./cti
COPY alembic ./alembic
COPY agent_ui ./agent_ui
COPY scripts_lib ./scripts_lib
COPY ivr_flows ./ivr_flows
COPY config ./config
# Editable: the service finds agent_ui/, alembic/, scripts_lib/ ... next to its package (REPO_ROOT).
RUN pip install -e .

RUN useradd --system --uid 10001 --home-dir /app cti && mkdir -p /data && chown cti /data
USER cti

ENV CTI_HTTP_HOST=0.0.0.0 \
    CTI_HTTP_PORT=8000 \
    CTI_DATABASE_URL=sqlite+aiosqlite:////data/cti.db
EXPOSE 8000
CMD ["sh", "-c", "cti migrate && exec cti serve"]
