# vmsim: one image for every service (host-agent, hypervisor + its guest processes,
# client-gen, the CLI). Each compose service picks its entry point with `command:`.
# Classic builder compatible (no BuildKit features).

# --- manifests: only the package.json files and the lockfile, so that `npm ci` below stays
# cached while sources change (COPY --from is cached on file contents).
FROM node:24-bookworm-slim AS manifests
WORKDIR /app
COPY . .
RUN find . -type f ! -name package.json ! -name package-lock.json -delete \
 && find . -depth -type d -empty -delete

# --- build: all dependencies, then `npm run build` (tsc -b and the guest bundle).
FROM node:24-bookworm-slim AS build
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY --from=manifests /app/ ./
RUN npm ci --no-fund --no-audit
COPY . .
RUN npm run build \
 && mkdir /out \
 && for d in packages/* services/*; do \
      [ -d "$d/dist" ] || continue; \
      mkdir -p "/out/$d" && cp -a "$d/dist" "/out/$d/"; \
    done \
 && cp -a services/host-agent/profiles /out/services/host-agent/ \
 && mkdir -p /out/scenarios && { [ ! -d scenarios ] || cp -a scenarios/. /out/scenarios/; } \
 && cp -a docker /out/docker \
 && find /out -name '*.tsbuildinfo' -delete \
 && find /out -name '*.d.ts' -delete -o -name '*.d.ts.map' -delete

# --- deps: production dependencies only (workspace packages are symlinks into /app).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY --from=manifests /app/ ./
RUN npm ci --omit=dev --no-fund --no-audit && rm -rf /root/.npm

# --- runtime
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    VMSIM_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/ ./
COPY --from=build /out/ ./
# Named volumes mounted on /data and /auth (the bus credentials) start out owned by node
# (docker copies the ownership); `vmsim run` writes its reports under /app/reports (compose
# bind-mounts ./reports there).
RUN mkdir -p /data /auth /app/reports && chown node:node /data /auth /app/reports \
 && chmod 755 docker/*
USER node
# Signals go straight to node (exec form, no shell in between); compose adds `init: true`
# so that a minimal init reaps any orphaned guest processes.
ENTRYPOINT []
CMD ["node", "services/hypervisor/dist/main.js"]
