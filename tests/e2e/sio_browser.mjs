// The unmodified socket.io-client in Debian's Chromium (headless), driven
// by tests/integration/test_socketio_browser.py over stdin/stdout like
// tests/socketio/sio_client.mjs in node: one browser for the whole run,
// one page per client.  A connect opens tests/socketio/browser.html on the
// connect URL's origin (the page and lpgate's Socket.IO path behind the
// same nginx), then every command of that client runs in its page
// (tests/socketio/sio_driver.mjs).  Besides those commands:
//   {"op": "closeall"}  closes every page, then prints {"ev": "closedall"}
//   {"op": "exit"}
// It prints {"ev": "ready"} once the browser runs; what a page throws
// comes as {"ev": "page_error", "id": C, "message": M}.
import readline from 'node:readline';
import { launch } from './chromium.mjs';

function out(ev) {
    process.stdout.write(JSON.stringify(ev) + '\n');
}

const browser = await launch();
const context = await browser.newContext();
const pages = new Map();

await context.exposeFunction('lpgOut', (ev) => out(ev));

async function run(cmd) {
    if (cmd.op === 'exit') {
        await browser.close();
        process.exit(0);
    }
    if (cmd.op === 'closeall') {
        for (const p of pages.values()) {
            await p.close();
        }
        pages.clear();
        out({ ev: 'closedall' });
        return;
    }
    let page = pages.get(cmd.id);
    if (cmd.op === 'connect' && !page) {
        page = await context.newPage();
        page.on('pageerror', (e) => out({ ev: 'page_error', id: cmd.id,
                                          message: e.message }));
        await page.goto(new URL('/browser.html', cmd.url).href);
        await page.waitForFunction(() => window.lpgHandle !== undefined);
        pages.set(cmd.id, page);
    }
    await page.evaluate((c) => window.lpgHandle(c), cmd);
}

/* one command at a time, in order */
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });

rl.on('line', (line) => {
    const cmd = JSON.parse(line);

    chain = chain.then(() => run(cmd)).catch((e) => {
        out({ ev: 'page_error', id: cmd.id, message: String(e) });
    });
});
rl.on('close', () => chain.then(() => browser.close())
                          .then(() => process.exit(0)));
out({ ev: 'ready' });
