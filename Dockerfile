# Notebook Observatory collector image (docker-compose.yml builds it; docs/operations.md).
# Pinned base image; the project and its dependencies are installed from pyproject.toml.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY cost ./cost
COPY slo ./slo
COPY dashboards ./dashboards
COPY alerts ./alerts
RUN pip install --no-compile . \
 && useradd --system --uid 10001 --home-dir /var/lib/observatory --create-home observatory

USER observatory
ENV OBSERVATORY_DB=/var/lib/observatory/observatory.duckdb \
    OBSERVATORY_TOKENS_FILE=/var/lib/observatory/tokens.yaml
VOLUME ["/var/lib/observatory"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
# Binding to all interfaces inside the container: auth stays on (tokens from OBSERVATORY_TOKENS).
CMD ["observatory", "serve", "--host", "0.0.0.0", "--port", "8080"]
