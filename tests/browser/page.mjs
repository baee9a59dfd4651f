// Opens netgraph's page in headless Debian chromium and reports what a user would see:
// the row of KEY in the totals by GROUP (process, container, pod, unit or domain; exact
// bytes from its data attributes), the series of the history chart drawn by GROUP, and
// the history shown after clicking the row (for a process: its peers and domains), and
// the engine line with what it cannot see.
// Usage: node page.mjs URL GROUP KEY SCREENSHOT
import { open } from "./launch.mjs";

const [url, group, key, screenshot] = process.argv.slice(2);
const { browser, page, errors } = await open({ width: 1400, height: 1000 });
try {
  await page.goto(url);
  await page.selectOption("#group", group);
  const row = page.locator(`#by-${group} tr[data-name="${key}"]`);
  await row.waitFor({ timeout: 20000 });
  const sent = Number(await row.getAttribute("data-sent"));
  const recv = Number(await row.getAttribute("data-recv"));
  const shown = await row.locator("td").allTextContents();
  await page.locator("#chart svg path").first().waitFor({ timeout: 10000 });
  // The chart redraws for the chosen grouping; wait until it shows KEY.
  await page.locator(`#chart svg path[data-key="${key}"]`).first().waitFor({ timeout: 10000 });
  const chartSeries = await page.locator("#chart svg path").evaluateAll((paths) => paths.map((p) => p.dataset.key));
  await row.click();
  await page.locator("#detail.open #detail-chart svg path").first().waitFor({ timeout: 10000 });
  const detailName = await page.locator("#detail-name").textContent();
  const detailSent = Number(await page.locator("#detail-totals [data-sent]").getAttribute("data-sent"));
  let detailPeers = [], detailDomains = [];
  if (group === "process" && await page.locator("#detail-peers-view:not([hidden])").count() > 0) {
    await page.locator("#detail-peers tr[data-peer]").first().waitFor({ timeout: 10000 });
    detailPeers = await page.locator("#detail-peers tr[data-peer]").evaluateAll((rows) => rows.map((r) => (
      { peer: r.dataset.peer, names: r.dataset.names, sent: Number(r.dataset.sent), recv: Number(r.dataset.recv) })));
    detailDomains = await page.locator("#detail-domains-chart svg path").evaluateAll((paths) => paths.map((p) => p.dataset.key));
  }
  // TCP's round-trip time beside the process's history, where it has any.
  const detailRtt = await page.locator("#detail-health-view:not([hidden]) #detail-health-chart svg path").evaluateAll((paths) => paths.map((p) => p.dataset.key));
  const reasons = await page.locator("#unattributed-reasons .reason").evaluateAll((spans) => spans.map((s) => (
    { reason: s.dataset.reason, bytes: Number(s.dataset.bytes), why: s.title })));
  const engine = await page.locator("#engine-name").textContent();
  const limits = await page.locator("#engine-limits").evaluate((p) => (p.hidden ? "" : p.textContent));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ sent, recv, shown, chartSeries, detailName, detailSent, detailPeers, detailDomains, detailRtt, reasons, engine, limits, errors }));
} finally {
  await browser.close();
}
