# Worker image for docker-compose.yml / deploy/ (not built on the dev machines: no engine).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY config ./config
RUN pip install --no-cache-dir .
ENV CITYBRAIN_CONFIG_DIR=/app/config CITYBRAIN_STATE_DIR=/var/lib/citybrain
EXPOSE 6066
CMD ["citybrain", "worker"]
