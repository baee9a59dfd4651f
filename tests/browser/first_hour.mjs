// Opens netgraph's page in headless Debian chromium as a new user does in the first
// hour, and reports what the history chart drew for the default range (1 hour) and
// for 15 minutes (its step, its first bucket), what the usage view projects, and, on
// a phone's screen, whether the page scrolls sideways and whether any chart's labels
// overlap; and the TCP health shown beside each process.
// Usage: node first_hour.mjs URL SCREENSHOT (the phone's view)
import { open } from "./launch.mjs";

const [url, screenshot] = process.argv.slice(2);
const { browser, page, errors } = await open({ width: 1400, height: 1000 });

// The history chart as drawn: its step, first bucket and range start.
async function chart() {
  const svg = page.locator("#chart svg");
  await svg.waitFor({ timeout: 20000 });
  return svg.evaluate((s) => ({ step: Number(s.dataset.step), first: Number(s.dataset.first), from: Number(s.dataset.from) }));
}

// Pairs of x-axis labels that overlap, in every chart drawn, and labels outside
// their chart.
function overlaps() {
  return page.evaluate(() => {
    const found = [];
    for (const svg of document.querySelectorAll("svg")) {
      const frame = svg.getBoundingClientRect();
      const boxes = [...svg.querySelectorAll("text")].map((t) => ({ text: t.textContent, box: t.getBoundingClientRect() }));
      for (const { text, box } of boxes) {
        if (box.left < frame.left - 1 || box.right > frame.right + 1) found.push(`${svg.parentElement.id}: "${text}" outside the chart`);
      }
      const labels = boxes.filter((_, i) => svg.querySelectorAll("text")[i].classList.contains("x-label"));
      for (let i = 1; i < labels.length; i++) {
        const [a, b] = [labels[i - 1], labels[i]];
        if (a.box.right > b.box.left) found.push(`${svg.parentElement.id}: "${a.text}" overlaps "${b.text}"`);
      }
    }
    return found;
  });
}

try {
  await page.goto(url);
  const hour = await chart();
  await page.selectOption("#range", "900");
  await page.waitForFunction((from) => Number(document.querySelector("#chart svg")?.dataset.from) > from, hour.from + 1800);
  const quarter = await chart();
  await page.locator("#usage-daily svg, #usage-daily .empty").first().waitFor({ timeout: 20000 });
  const usage = {
    projections: await page.locator("rect.projection").count(),
    monthProjection: await page.locator("#month-projection").count(),
    text: await page.locator("#usage-projection").textContent(),
  };
  const wide = { overlaps: await overlaps() };
  // TCP health beside the processes that have it.
  const health = await page.locator("#by-process tr[data-name]").evaluateAll((rows) => rows.map((r) => (
    { name: r.dataset.name, health: r.querySelector("td.health")?.textContent ?? null })));
  await page.setViewportSize({ width: 390, height: 844 });
  // The charts redraw at the new width after a resize settles.
  await page.waitForFunction(() => [...document.querySelectorAll("svg")].every((s) => s.getBoundingClientRect().width <= 390));
  await page.waitForTimeout(300);
  const phone = {
    scrollWidth: await page.evaluate(() => document.documentElement.scrollWidth),
    svgWidths: await page.evaluate(() => [...document.querySelectorAll("svg")].map((s) => Math.round(s.getBoundingClientRect().width))),
    overlaps: await overlaps(),
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ hour, quarter, usage, wide, health, phone, errors }));
} finally {
  await browser.close();
}
