# One image for both services:
#   backend  (default): python -m backend   - the REST API under gunicorn on $HOST:$PORT
#   executor:           python -m executor  - one worker consuming the task queue
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged user; /data is where docker-compose mounts the CSV files (read-only).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app colsum \
    && mkdir -p /data \
    && chown colsum:colsum /data

WORKDIR /app

# Dependency layer: depends on pyproject.toml only, so editing the code does not
# reinstall the dependencies.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code. README.md* may match nothing: sample.csv keeps the instruction valid then.
COPY colsum/ colsum/
COPY backend/ backend/
COPY executor/ executor/
COPY sample.csv swagger.yaml README.md* ./
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

USER colsum

EXPOSE 8000
CMD ["python", "-m", "backend"]
