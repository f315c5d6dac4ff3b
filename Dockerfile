# One image for every Colsum process:
#   backend  (default): python -m backend   - the REST API and dashboard under gunicorn on $HOST:$PORT
#   executor:           python -m executor  - one worker consuming the task queue
# Built and run by docker-compose.yaml; `docker build -t colsum .` works on its own too.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Unprivileged user; /data is where docker-compose mounts the CSV files (and uploads land).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app colsum \
    && mkdir -p /data \
    && chown colsum:colsum /data

WORKDIR /app

# Dependency layer: depends on pyproject.toml only, so editing the code does not
# reinstall the dependencies.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, installed without touching the dependencies again. README.md* may match
# nothing: sample.csv keeps the instruction valid then.
COPY colsum/ colsum/
COPY backend/ backend/
COPY executor/ executor/
COPY sample.csv swagger.yaml README.md* ./
# numba compiles the engine's kernel once, here, into a cache the colsum user may write
# (numba refuses a cache it cannot write), so that no executor compiles it at start-up.
ENV NUMBA_CACHE_DIR=/app/.numba-cache
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && python -c "from executor import evens, fastsum, parts; fastsum.warm(); evens.warm(); parts.warm()" \
    && chown -R colsum:colsum "$NUMBA_CACHE_DIR"

USER colsum

# 8000: the backend's API; 9100: an executor's Prometheus metrics (EXECUTOR_METRICS_PORT).
EXPOSE 8000 9100
CMD ["python", "-m", "backend"]
