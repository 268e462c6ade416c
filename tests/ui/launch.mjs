// Launches Debian's chromium (or PGUA_CHROMIUM) headless for the console's browser tests.

import { chromium } from 'playwright-core';

/** A headless browser with nothing of its own talking to the network. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.PGUA_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
