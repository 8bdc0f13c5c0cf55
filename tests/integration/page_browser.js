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

// Runs a scenario against BASE_URL (argv[2]): no Content-Security-Policy violation allowed, a
// screenshot saved to SCREENSHOT (argv[3]) whether it passed or not, exit code 1 on failure.
async function scenario(body) {
  const [base, shot] = process.argv.slice(2);
  const ctx = await open();
  try {
    await ctx.page.goto(base + "/");
    await body(ctx);
    if (ctx.csp.length) throw new Error("Content-Security-Policy violations: " + ctx.csp.join("; "));
    ctx.step("no Content-Security-Policy violation");
    await ctx.page.screenshot({ path: shot, fullPage: true });
    ctx.step("screenshot saved");
  } catch (e) {
    await ctx.page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error("FAILED: " + e.message);
    process.exitCode = 1;
  } finally {
    await ctx.browser.close();
  }
}

module.exports = { open, scenario };
