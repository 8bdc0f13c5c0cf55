// Drives lastgood's approval page in Debian's Chromium (playwright-core, no browser download).
// usage: node approval_page.js BASE_URL SCREENSHOT  (tokens in env: WRONG_ROLE_TOKEN, TOKEN_1, TOKEN_2)
const { scenario } = require("./page_browser");

scenario(async ({ page, dialogs, step }) => {
  await page.waitForSelector("#proposals tr[data-proposal] button.approve", { timeout: 15000 });
  step("pending proposal shown");
  const row = await page.textContent("#proposals tr[data-proposal]");
  if (!row.includes("bad2") || !row.includes("v1")) throw new Error("the proposal row lacks the releases: " + row);
  if (!row.includes("consecutive_failures")) throw new Error("the proposal row lacks the evidence: " + row);
  // Why, in the probe's own words; who may approve and how many more; when it was made and expires.
  for (const want of ["body does not contain", "2 more needed", "may approve: eng-manager", "created ", "expires in "])
    if (!row.includes(want)) throw new Error("the proposal row lacks \"" + want + "\": " + row);
  step("why, who may approve, how many more and when shown");

  // A token whose role may not decide this severity: the refusal is shown plainly.
  await page.fill("#token", process.env.WRONG_ROLE_TOKEN);
  await page.click("#save");
  await page.click("#proposals button.approve");
  // (Waits by locator: the page's Content-Security-Policy forbids the eval waitForFunction uses.)
  await page.locator("#error", { hasText: /^Refused:/ }).waitFor({ timeout: 10000 });
  step("wrong role refused: " + (await page.textContent("#error")));

  // Each approval is awaited by what the page shows: n/2 approvals, then the proposal leaving "pending".
  const tokens = [process.env.TOKEN_1, process.env.TOKEN_2];
  for (let i = 0; i < tokens.length; ++i) {
    await page.fill("#token", tokens[i]);
    await page.click("#save");
    if (i === 0) await page.fill("#proposals input.comment", "looks right");
    await page.click("#proposals button.approve");
    if (i + 1 < tokens.length)
      await page.locator("#proposals td.state", { hasText: (i + 1) + "/2 approvals" }).first().waitFor({ timeout: 10000 });
  }
  step("two approvals given");
  if (!dialogs.some((m) => m.includes("Approve rolling back app from bad2 to v1")))
    throw new Error("no confirmation was asked before approving: " + JSON.stringify(dialogs));
  step("confirmation asked before approving");
  await page.locator("#recent td.state", { hasText: /^verified/ }).first().waitFor({ timeout: 30000 });
  step("state shown as verified");
  const done = await page.textContent("#recent tr[data-proposal]");
  if (!done.includes("looks right")) throw new Error("the approval comment is not shown: " + done);
  step("approval comment shown");
  await page.waitForSelector("#incidents tr[data-incident] a", { timeout: 10000 });
  const href = await page.getAttribute("#incidents tr[data-incident] a", "href");
  const md = await (await page.request.get(new URL(href, page.url()).toString())).text();
  if (!md.includes("## Follow-up review")) throw new Error("the incident link did not give the record: " + md.slice(0, 200));
  step("incident listed and its record linked: " + href);
});
