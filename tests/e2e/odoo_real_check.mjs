// By-hand check, not run by CI (CI cannot run Odoo): Odoo 15's own web
// client in Debian's Chromium, behind the shipped nginx config
// (contrib/nginx/lpgate.conf, here on 127.0.0.1:8080), long polling through
// lpgate.  Needs a running Odoo 15 on 8069 (db odoo15, admin/admin, with
// contrib/odoo/lpgate_bus installed or not) and lpgate on 8072, e.g.
//   lpgate -p 8072 -d odoo15 --odoo-url http://127.0.0.1:8069 ...
// Logs in, lets the client start polling (it sends "channels": []), posts
// in #general from another session, and checks the browser's own poll got
// the mail.channel/new_message; prints the im_status answers it saw.
//   cd tests/e2e && BASE=http://127.0.0.1:8080 node odoo_real_check.mjs
import { chromium } from "playwright-core";
const BASE = process.env.BASE || "http://127.0.0.1:8080";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage();
const polls = [], imstatus = [];
page.on("response", async (r) => {
  const u = r.url();
  if (u.includes("/longpolling/poll") || u.includes("/longpolling/im_status")) {
    let body = "";
    try { body = await r.text(); } catch (e) { body = "(no body: " + e.message + ")"; }
    (u.includes("/longpolling/poll") ? polls : imstatus).push({ status: r.status(), body: body.slice(0, 300), at: Date.now() });
  }
});
const req = [];
page.on("request", (r) => { if (r.url().includes("/longpolling/poll")) req.push(r.postData()); });
await page.goto(BASE + "/web/login");
await page.fill("input[name=login]", "admin");
await page.fill("input[name=password]", "admin");
await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
await page.waitForTimeout(6000);
console.log("first poll request body:", req[0]);
// another session (the API, as admin) posts in #general
const login = await fetch(BASE + "/web/session/authenticate", { method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ jsonrpc: "2.0", params: { db: "odoo15", login: "admin", password: "admin" } }) });
const sid = login.headers.get("set-cookie").split(";")[0];
const t0 = Date.now();
await fetch(BASE + "/web/dataset/call_kw", { method: "POST",
  headers: { "Content-Type": "application/json", Cookie: sid },
  body: JSON.stringify({ jsonrpc: "2.0", params: { model: "mail.channel", method: "message_post",
    args: [1], kwargs: { body: "browser check " + t0, message_type: "comment", subtype_xmlid: "mail.mt_comment" } } }) });
for (let i = 0; i < 100 && !polls.some((p) => p.body.includes("browser check " + t0)); i++)
  await page.waitForTimeout(100);
for (let i = 0; i < 700 && imstatus.length === 0; i++) await page.waitForTimeout(100);
const hit = polls.find((p) => p.body.includes("browser check " + t0));
console.log("polls answered:", polls.length, "statuses:", [...new Set(polls.map((p) => p.status))]);
console.log("message reached the browser's poll:", !!hit, hit ? (hit.at - t0) + " ms after the post" : "");
if (hit) console.log("answer:", hit.body);
console.log("im_status calls:", imstatus.length, imstatus.slice(0, 2));
await browser.close();
process.exit(hit ? 0 : 1);
