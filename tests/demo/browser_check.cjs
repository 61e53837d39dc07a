// Drives the demo page in Debian's headless Chromium with playwright-core (no browser download).
// Usage: node browser_check.cjs URL OUT_DIR. Writes OUT_DIR/result.json and shot-N.png.
// Every wait is a condition with a deadline; the only fixed pause is the one second between
// screenshots that the check is about.
"use strict";
const fs = require("fs");
const path = require("path");
const os = require("os");
const { chromium } = require(path.join(process.env.FACECAST_NODE_MODULES, "playwright-core"));

const [url, outDir] = process.argv.slice(2);
const SHOTS = 4;

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "facecast-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.FACECAST_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
    viewport: { width: 1280, height: 800 },
  });
  const result = { console: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (msg) => result.console.push(msg.text()));
    await page.goto(url);
    await page.waitForSelector("body[data-ready=yes]", { timeout: 60000 });
    const clicked = Date.now();
    await page.click("#new-session");
    await page.waitForFunction(() => window.facecastDemo.firstFrameMs !== null, null,
      { timeout: 180000, polling: 100 });
    result.firstFrameMs = await page.evaluate(() => window.facecastDemo.firstFrameMs);
    result.clickToFirstFrameMs = Date.now() - clicked;
    await page.waitForSelector("body[data-status=running]", { timeout: 120000 });
    result.statusText = await page.textContent("#status");
    // Playing: not paused, has data, and its clock advances.
    const t0 = await page.evaluate(() => document.getElementById("video").currentTime);
    await page.waitForFunction((t) => {
      const v = document.getElementById("video");
      return !v.paused && v.readyState >= 2 && v.currentTime > t + 0.5;
    }, t0, { timeout: 30000, polling: 100 });
    result.video = await page.evaluate(() => {
      const v = document.getElementById("video");
      const r = v.getBoundingClientRect();
      return { paused: v.paused, readyState: v.readyState, currentTime: v.currentTime,
        videoWidth: v.videoWidth, videoHeight: v.videoHeight,
        clientWidth: r.width, clientHeight: r.height, frames: window.facecastDemo.frames };
    });
    result.mouth = await page.evaluate(async ({ w, h }) =>
      (await fetch(`/demo/mouth?width=${w}&height=${h}`)).json(),
      { w: result.video.videoWidth, h: result.video.videoHeight });
    await page.waitForSelector("body[data-speaking=yes]", { timeout: 60000 });
    result.shots = [];
    const video = await page.$("#video");
    for (let i = 0; i < SHOTS; i++) {
      if (i > 0) await page.waitForTimeout(1000);
      const file = path.join(outDir, `shot-${i}.png`);
      await video.screenshot({ path: file });
      result.shots.push({ file, speaking: await page.getAttribute("body", "data-speaking") });
    }
    await page.screenshot({ path: path.join(outDir, "page.png") });
    result.ok = true;
  } catch (error) {
    result.error = String(error && error.stack || error);
    try { await context.pages()[0].screenshot({ path: path.join(outDir, "failure.png") }); } catch (_) {}
  } finally {
    fs.writeFileSync(path.join(outDir, "result.json"), JSON.stringify(result, null, 2));
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(result.ok ? 0 : 1);
}

main();
