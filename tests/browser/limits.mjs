// Opens netgraph's page in headless Debian chromium and reports the limit badges: on
// the live list's processes, and on the alert rules that throttle or block.
// Usage: node limits.mjs URL NAME SCREENSHOT (NAME: a process expected to be limited)
import { open } from "./launch.mjs";

const [url, name, screenshot] = process.argv.slice(2);
const { browser, page, errors } = await open({ width: 1400, height: 1000 });

try {
  await page.goto(url);
  const row = page.locator(`#live tr[data-name="${name}"]`);
  await row.waitFor({ timeout: 20000 });
  await page.waitForFunction((name) => document.querySelector(`#live tr[data-name="${name}"] .limit`), name, { timeout: 20000 });
  const badges = await page.locator("#live tr[data-name]").evaluateAll((rows) => rows.map((r) => {
    const badge = r.querySelector(".limit");
    return { name: r.dataset.name, limit: badge?.dataset.limit ?? null, holding: badge?.classList.contains("holding") ?? false, title: badge?.title ?? null };
  }));
  const rules = await page.locator("#quotas tr[data-rule]").evaluateAll((rows) => rows.map((r) => {
    const badge = r.querySelector(".limit");
    return { rule: r.dataset.rule, action: badge?.dataset.action ?? null, on: badge?.classList.contains("holding") ?? false };
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ badges, rules, errors }));
} finally {
  await browser.close();
}
