// Reads lastgood's public status page in Debian's Chromium (playwright-core, no browser download)
// after a rollback that was verified: the banner, the service by its public name, the incident in
// a sentence, no Content-Security-Policy violation, no request to another site; a screenshot.
// usage: node status_page.js BASE_URL SCREENSHOT
const { open } = require("./page_browser");

(async () => {
  const [base, shot] = process.argv.slice(2);
  const ctx = await open();
  const { page, step } = ctx;
  const elsewhere = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) elsewhere.push(r.url()); });
  try {
    const res = await page.goto(base + "/status");
    if (res.status() !== 200) throw new Error("GET /status answered " + res.status());
    const summary = (await page.textContent("#summary")).trim();
    if (summary !== "All services are operational") throw new Error("banner: " + summary);
    step("banner: " + summary);
    const service = await page.textContent("li.service");
    if (!service.includes("Example Shop") || !service.includes("Operational")) throw new Error("service row: " + service);
    step("service shown by its public name as operational");
    const incident = await page.textContent("li.incident");
    if (!/Major outage of Example Shop/.test(incident) || !/We restored its previous version at \d\d:\d\d UTC/.test(incident))
      throw new Error("incident: " + incident);
    step("incident told in a sentence: " + incident.replace(/\s+/g, " ").trim());
    const maintenance = await page.textContent("ul.maintenance");
    if (!maintenance.includes("Scheduled maintenance of Example Shop")) throw new Error("maintenance: " + maintenance);
    step("scheduled maintenance shown");
    // The stylesheet applied (our own /status.css, allowed by the page's CSP): the banner is green.
    const colour = await page.$eval("#summary", (e) => getComputedStyle(e).backgroundColor);
    if (colour !== "rgb(26, 127, 55)") throw new Error("banner colour: " + colour);
    step("stylesheet applied");
    if (ctx.csp.length) throw new Error("Content-Security-Policy violations: " + ctx.csp.join("; "));
    if (elsewhere.length) throw new Error("requests to other places: " + elsewhere.join(", "));
    step("nothing blocked, nothing fetched from elsewhere");
    await page.screenshot({ path: shot, fullPage: true });
    step("screenshot saved");
  } catch (e) {
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error("FAILED: " + e.message);
    process.exitCode = 1;
  } finally {
    await ctx.browser.close();
  }
})();
