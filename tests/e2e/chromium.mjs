// Debian's Chromium, headless, launched by playwright-core for the browser
// tests (demo.mjs, sio_browser.mjs): $CHROMIUM or /usr/bin/chromium, no
// sandbox (the tests may run as root), nothing talking to the network
// besides the pages.
import { chromium } from 'playwright-core';

export function launch() {
    return chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync'],
    });
}
