// Opens netgraph's page in headless Debian chromium and reports its usage view as a
// user sees it: every bar segment (period, key, bytes) of the daily and monthly charts,
// the projections drawn, and the alert rules listed with how much of each is used.
// Usage: node usage.mjs URL SCREENSHOT
import { open } from "./launch.mjs";

const [url, screenshot] = process.argv.slice(2);
const { browser, page, errors } = await open({ width: 1400, height: 1400 });
try {
  await page.goto(url);
  await page.locator("#usage-daily rect.segment").first().waitFor({ timeout: 20000 });
  await page.locator("#quotas tr[data-rule]").first().waitFor({ timeout: 10000 });
  const segments = (target) => page.locator(`#${target} rect.segment`).evaluateAll((rects) => rects.map((r) => (
    { period: r.dataset.period, key: r.dataset.key, bytes: Number(r.dataset.bytes) })));
  const projections = (target) => page.locator(`#${target} rect.projection`).evaluateAll((rects) => rects.map((r) => (
    { period: r.dataset.period, bytes: Number(r.dataset.bytes) })));
  const daily = await segments("usage-daily");
  const monthly = await segments("usage-monthly");
  const projected = { daily: await projections("usage-daily"), monthly: await projections("usage-monthly") };
  const quotas = await page.locator("#quotas tr[data-rule]").evaluateAll((rows) => rows.map((r) => (
    { rule: r.dataset.rule, used: Number(r.dataset.used), limit: Number(r.dataset.limit), firing: r.dataset.firing === "true",
      text: r.textContent })));
  await page.locator("#usage").screenshot({ path: screenshot });
  console.log(JSON.stringify({ daily, monthly, projected, quotas, errors }));
} finally {
  await browser.close();
}
