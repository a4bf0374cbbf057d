# Weir: the integration engine, as a container.
#
#   docker build -t weir .
#   docker run -d --name weir -v weir-data:/data -v "$PWD/channels:/channels:ro" \
#     -p 8080:8080 weir run /channels/orders.json
#
# Listeners bind 127.0.0.1 by default: a channel run here sets its source's "host": "0.0.0.0"
# (with jwt or apiKey, and tls) for -p to reach it.
#
# Runs as the unprivileged user `weir`; the message store lives in the volume /data (mode 0700,
# files 0600). docker stop sends SIGTERM: in-flight work finishes within each channel's
# shutdownTimeoutMs, so give it more time than that (docker stop -t 30).

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary matches the platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json tsconfig.build.json index.ts ./
COPY bin ./bin
COPY engine ./engine
COPY shared ./shared
COPY components ./components
# npm ci runs the `prepare` script, which compiles the TypeScript to dist/. Production dependencies
# only: esbuild is one of them, it compiles a channel's own `.ts` components as they load.
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    WEIR_DATA_DIR=/data
WORKDIR /app
RUN groupadd --system weir \
 && useradd --system --gid weir --home-dir /data --no-create-home --shell /usr/sbin/nologin weir \
 && mkdir -p /data \
 && chown weir:weir /data \
 && chmod 0700 /data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY schema ./schema
USER weir
VOLUME /data
# The admin server (/healthz, /readyz, /metrics) listens on 127.0.0.1:8089 inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8089/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/weir.js"]
CMD ["run", "/channels/channel.json"]
