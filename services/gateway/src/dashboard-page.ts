import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { COVISIT_WINDOW_IN_WORDS } from "@recsys/validation";

/** A file of the page in src/dashboard/, which the build copies to dist/dashboard/ next to this module. */
const pageFile = (name: string) => readFileSync(new URL(`./dashboard/${name}`, import.meta.url), "utf8");

const STYLE = pageFile("style.css");
const SCRIPT = pageFile("script.js").replace("{{COVISIT_WINDOW}}", COVISIT_WINDOW_IN_WORDS);
// Style and script go inline into the page's empty <style> and <script> elements: one response
// carries the whole page, and the policy below pins both by hash.
const HTML = pageFile("index.html")
  .replace("<style></style>", () => `<style>${STYLE}</style>`)
  .replace("<script></script>", () => `<script>${SCRIPT}</script>`);

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** The dashboard page, and a policy that lets only its own inline script and style run. */
export const DASHBOARD_PAGE = {
  html: HTML,
  contentSecurityPolicy: [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
};
