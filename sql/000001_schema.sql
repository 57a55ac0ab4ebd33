-- Users and their alerts. Names are quoted so a Prisma model called `User` / `Alert`
-- (with camelCase fields) maps onto these tables without @@map.

CREATE TABLE "User" (
  id          text PRIMARY KEY,
  email       text NOT NULL UNIQUE,
  name        text NULL,
  "createdAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "Alert" (
  id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
  "userId"    text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE,
  type        text NOT NULL DEFAULT 'general',
  title       text NOT NULL,
  message     text NOT NULL DEFAULT '',
  link        text NULL,
  data        jsonb NULL,
  read        boolean NOT NULL DEFAULT false,
  "createdAt" timestamptz NOT NULL DEFAULT now()
);

-- A user's bell: newest first.
CREATE INDEX "Alert_userId_createdAt_idx" ON "Alert" ("userId", "createdAt" DESC, id DESC);
-- A user's unread count stays cheap however many read alerts pile up.
CREATE INDEX "Alert_userId_unread_idx" ON "Alert" ("userId") WHERE NOT read;
