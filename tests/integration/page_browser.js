// What the page tests share: Debian's Chromium through playwright-core (no browser download),
// dialogs accepted and remembered, Content-Security-Policy violations collected.
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../scripts/npm/browser/node_modules/playwright-core"));

async function open() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = await browser.newPage();
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.accept(); });
  const csp = [];
  page.on("console", (m) => { if (m.type() === "error" && m.text().includes("Content Security Policy")) csp.push(m.text()); });
  return { browser, page, dialogs, csp, step: (s) => console.log("step: " + s) };
}

module.exports = { open };
