# The pgbell daemon as its own container: deploy it beside the app, as its own process.
#   docker build -t pgbell .
#   docker run -e DATABASE_URL=… -e SESSION_SECRET=… -p 8080:8080 pgbell
# Other commands: docker run … pgbell node bin/pgbell.js migrate (or doctor, install, token).

# Build: TypeScript and the demo bundle, with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY demo ./demo
RUN npm ci --ignore-scripts --no-audit --no-fund && npm run build

# Production dependencies only (no embedded Postgres download: the container is given DATABASE_URL).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080 LOG_FORMAT=json
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY sql ./sql
# Not root: the daemon needs no privilege, and its port is above 1024.
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/pgbell.js", "start"]
