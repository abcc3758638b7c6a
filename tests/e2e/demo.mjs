// End-to-end test of lpgate's demo page in Debian's Chromium (headless),
// driven by playwright-core.  tests/integration/test_demo.py runs it and
// answers its prompts on stdin: it prints STOP when lpgate must stop, then
// waits for GO (lpgate started again, messages sent through SQL meanwhile).
import { launch } from './chromium.mjs';
import readline from 'node:readline';

const url = process.env.LPGATE_DEMO_URL;
// websocket, sse or poll: forced with ?transport=, and checked on the page
const transport = process.env.LPGATE_TRANSPORT || '';
const shot = process.env.LPGATE_SCREENSHOT;
const sqlTexts = (process.env.LPGATE_SQL_TEXTS || '').split(',');
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

function log(...a) { console.log(...a); }

const browser = await launch();
try {
    const a = await (await browser.newContext()).newPage();
    const b = await (await browser.newContext()).newPage();
    await a.goto(url);
    await b.goto(url);
    for (const p of [a, b]) {
        await p.waitForSelector('#status.online', { timeout: 20000 });
        if (transport) {
            await p.waitForSelector(`#transport:text-is("${transport}")`,
                                    { timeout: 5000 });
        }
    }
    log('both pages online' + (transport ? ' over ' + transport : ''));

    await a.fill('#name', 'alice');
    await a.fill('#text', 'hello from A');
    await a.click('#send');
    await b.waitForSelector('#messages li:has-text("hello from A")',
                            { timeout: 15000 });
    await a.waitForSelector('#messages li:has-text("hello from A")',
                            { timeout: 15000 });
    log('message from A reached B');

    log('STOP');
    await nextLine();
    await a.waitForSelector('#status.offline', { timeout: 20000 });
    await b.waitForSelector('#status.offline', { timeout: 20000 });
    log('both icons red');
    log('STOPPED');

    await nextLine();   // GO: lpgate runs again, SQL messages were sent
    for (const p of [a, b]) {
        await p.waitForSelector('#status.online', { timeout: 30000 });
        if (transport) {
            await p.waitForSelector(`#transport:text-is("${transport}")`,
                                    { timeout: 5000 });
        }
        for (const t of sqlTexts) {
            await p.waitForSelector(`#messages li:has-text("${t}")`,
                                    { timeout: 30000 });
        }
    }
    log('both icons green, SQL messages arrived');
    if (shot) {
        await b.screenshot({ path: shot });
    }
    log('DONE');
} finally {
    await browser.close();
    lines.close();
}
process.exit(0);
