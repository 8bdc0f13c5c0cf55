// Drives lastgood's page in Debian's Chromium through an escalated and silenced service: the
// escalation and its Clear button, the silence with who and until when, and why the breach is
// held once cleared. usage: node page_states.js BASE_URL SCREENSHOT  (TOKEN in env)
const { scenario } = require("./page_browser");

scenario(async ({ page, dialogs, step }) => {
  await page.waitForSelector("#services tr[data-service] button.clear", { timeout: 15000 });
  const svc = await page.textContent("#services tr[data-service]");
  if (!svc.includes("escalated:")) throw new Error("the escalation is not shown: " + svc);
  if (!svc.includes("body does not contain")) throw new Error("the firing trigger's why (the probe's reason) is not shown: " + svc);
  if (!svc.includes("silenced by bob, ends in")) throw new Error("the silence is not shown on the service: " + svc);
  step("escalation and silence shown on the service");
  const sil = await page.textContent("#silences tr[data-silence]");
  for (const want of ["deploy window", "bob", "active", "in "]) if (!sil.includes(want)) throw new Error("the silence row lacks \"" + want + "\": " + sil);
  step("silence listed with who, why and until when");
  await page.fill("#token", process.env.TOKEN);
  await page.click("#save");
  await page.click("#services button.clear");
  await page.locator("#services tr[data-service]", { hasNotText: "escalated:" }).first().waitFor({ timeout: 10000 });
  if (!dialogs.some((m) => m.includes("Clear the escalation of app"))) throw new Error("no confirmation before clearing: " + JSON.stringify(dialogs));
  step("cleared through the Clear button, after a confirmation");
  await page.locator("#decisions tr.decision", { hasText: "silenced until" }).first().waitFor({ timeout: 10000 });
  step("the breach is shown held: " + (await page.locator("#decisions tr.decision", { hasText: "silenced until" }).first().textContent()));
});
