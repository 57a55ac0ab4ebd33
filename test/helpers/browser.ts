/**
 * Debian's Chromium (never a downloaded browser) for the browser tests, driven by playwright-core.
 * Without it those tests skip with one line, unless PGBELL_REQUIRE_BROWSER=1 (set by .ci/run).
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) {
  if (process.env.PGBELL_REQUIRE_BROWSER === '1') throw new Error(`PGBELL_REQUIRE_BROWSER=1 but ${CHROMIUM} does not exist (apt-get install chromium)`);
  console.warn(`browser tests skipped: ${CHROMIUM} not found (apt-get install chromium, or set CHROMIUM_PATH)`);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // This machine's network is closed: keep Chromium from phoning home at start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
