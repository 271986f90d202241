# Worker image for docker-compose.yml and deploy/k8s/ (not built on the development
# machines: no Docker engine there).  The console's map and chart libraries come from npm in a
# build stage, as scripts/vendor-web.sh does locally: no CDN at run time.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home citybrain && mkdir -p /var/lib/citybrain && chown citybrain /var/lib/citybrain
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY config ./config
COPY --from=web /web/node_modules/leaflet/dist/leaflet.js /web/node_modules/leaflet/dist/leaflet.css ./src/citybrain/web/static/vendor/leaflet/
COPY --from=web /web/node_modules/leaflet/dist/images ./src/citybrain/web/static/vendor/leaflet/images
COPY --from=web /web/node_modules/echarts/dist/echarts.min.js /web/node_modules/echarts/LICENSE ./src/citybrain/web/static/vendor/echarts/
RUN pip install --no-cache-dir .
ENV CITYBRAIN_CONFIG_DIR=/app/config CITYBRAIN_STATE_DIR=/var/lib/citybrain
USER citybrain
EXPOSE 6066
CMD ["citybrain", "worker"]
