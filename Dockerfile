# syntax=docker/dockerfile:1
# Tessera production image: compiled JavaScript on Node.js 20 (the version the tests and CI run), production
# dependencies only, non-root. The same image runs the authority (the default command) and the sidecar
# (`node dist/src/sidecar/main.js`); its health check follows TESSERA_LISTEN and TESSERA_TLS_CERT for both.
#
# The base is pinned by digest: node:20.20.2-bookworm-slim, the multi-platform index of node:20-bookworm-slim as
# built on 2026-04-22 (docker-library/repo-info). To move it: `docker buildx imagetools inspect node:20-bookworm-slim`
# and replace both the version and the digest, in both stages.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:25070a03f077f5860e4f2db8d147380678ed40ead415a21eaffd5a6208f61948

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY gen ./gen
COPY src ./src
# The operator console's sources: `npm run build` bundles them (esbuild, a devDependency) into dist/console, which the
# runtime stage takes with the rest of dist/ and the authority serves at /console/.
COPY console ./console
COPY scripts/hash-api-key.mjs ./scripts/hash-api-key.mjs
COPY bin/load.mjs ./bin/load.mjs
RUN npm run build && npm prune --omit=dev \
 && node --check dist/src/healthcheck.js && node --check scripts/hash-api-key.mjs \
 && test -f dist/console/index.html

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    TESSERA_LISTEN=0.0.0.0:8080
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/proto ./proto
# The SHA-256 of an API key, for the callers file:
#   printf %s "$KEY" | docker run --rm -i IMAGE node scripts/hash-api-key.mjs
#   docker run --rm IMAGE node scripts/hash-api-key.mjs --new      (a fresh key on stderr, its hash on stdout)
COPY --from=build --chown=root:root /app/scripts/hash-api-key.mjs ./scripts/hash-api-key.mjs
COPY --from=build --chown=root:root /app/bin/load.mjs ./bin/load.mjs
# The image's own "node" user (uid 1000); the app files stay root-owned and read-only to it.
USER node
EXPOSE 8080
# GET /healthz on TESSERA_LISTEN's port (a wildcard address on loopback), over https when TESSERA_TLS_CERT is set,
# trusting that very certificate: it follows the configuration, for the authority and the sidecar.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "dist/src/healthcheck.js"]
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
