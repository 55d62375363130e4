// Each service's Dockerfile builds the image its own configuration expects, and takes from the
// build context only what is there and not ignored.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { all, CONFIG, envOf, imageOf, last, SERVICES, servicesDir, toRepo } from "./harness/deploy-config.js";
import { repoRoot } from "./harness/stack.js";
// @ts-expect-error plain ESM script shared with `pnpm stack:up` and `pnpm cluster:up`
import { serviceArgs } from "../scripts/service-command.mjs";

/** .dockerignore patterns as regular expressions over paths relative to the build context. */
const dockerignore = readFileSync(join(repoRoot, ".dockerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"))
  .map((p) => {
    const body = p
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map((seg) =>
        seg === "**"
          ? "(?:.*/)?"
          : seg
              .replace(/[.+^${}()|[\]\\]/g, "\\$&")
              .replace(/\*/g, "[^/]*")
              .replace(/\?/g, "[^/]") + "/",
      )
      .join("")
      .replace(/\/$/, "");
    return new RegExp(`^${body}(?:/.*)?$`);
  });
const ignoredByDocker = (path: string) => dockerignore.some((re) => re.test(path));

describe("Dockerfiles", () => {
  it.each(SERVICES)("%s: built with pnpm deploy, run as non-root node:20 on its own port", (name) => {
    const cfg = CONFIG[name]!;
    expect(existsSync(join(servicesDir, name, "Dockerfile")), `services/${name}/Dockerfile`).toBe(true);
    const image = imageOf(name);
    expect(image.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of image.stages) expect(s.image).toBe("node:20-bookworm-slim");

    const build = image.stages.slice(0, -1);
    const runs = build.flatMap((s) => all(s, "RUN").map((i) => i.args));
    expect(runs.some((r) => /\bpnpm\b/.test(r) && /\bdeploy\b/.test(r) && r.includes(`--filter ${cfg.packageName}`) && /--prod\b/.test(r))).toBe(true);
    expect(build.some((s) => envOf(s).ONNXRUNTIME_NODE_INSTALL === "skip")).toBe(true);
    const fromBuild = all(image.final, "COPY").filter((c) => /--from=(\S+)/.test(c.args));
    expect(fromBuild.length).toBeGreaterThan(0);
    for (const c of fromBuild) expect(build.map((s) => s.name)).toContain(/--from=(\S+)/.exec(c.args)![1]);

    const user = last(image.final, "USER")?.args.split(":")[0];
    expect(user).toBeDefined();
    expect(["root", "0"]).not.toContain(user);
    expect(image.env.HOST).toBe("0.0.0.0");
    expect(
      all(image.final, "EXPOSE")
        .flatMap((e) => e.args.split(/\s+/))
        .map((p) => Number(p.split("/")[0])),
    ).toEqual([cfg.port]);

    expect(image.healthcheck[0]).toBe("node");
    const script = image.healthcheck.join(" ");
    expect(script).toContain("/healthz");
    const hcPort = /process\.env\.([A-Z0-9_]+)\s*\?\?\s*(\d+)/.exec(script);
    expect(hcPort?.slice(1)).toEqual([cfg.portVar, String(cfg.port)]);

    expect(image.cmd[0]).toBe("node");
    const main = image.cmd.slice(1).find((a) => !a.startsWith("-"));
    expect(main).toBeDefined();
    expect(existsSync(toRepo(name, image, main!)), `${main} in the image is services/${name}/${main} here`).toBe(true);
    // The image runs node with the flags the launchers here give the service (the gateway's young generation, for one).
    expect(image.cmd.slice(1, -1)).toEqual(serviceArgs(repoRoot, name).slice(0, -1));

    // What the final stage takes from the build context must be there and not ignored.
    for (const c of all(image.final, "COPY").filter((i) => !i.args.startsWith("--from"))) {
      const parts = c.args.replace(/^(?:--\S+\s+)*/, "").split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(repoRoot, src)), `${src} exists`).toBe(true);
        expect(ignoredByDocker(src), `${src} is in .dockerignore`).toBe(false);
      }
    }
  });

  it("the embedder image holds the model the embedder loads by default", () => {
    const image = imageOf("embedder");
    const copies = all(image.final, "COPY")
      .filter((i) => !i.args.startsWith("--from"))
      .map((i) => i.args.replace(/^(?:--\S+\s+)*/, "").split(/\s+/));
    const model = copies.find((parts) => toRepo("embedder", image, parts.at(-1)!) === join(servicesDir, "embedder/models/default"));
    expect(model, "a COPY into <WORKDIR>/models/default").toBeDefined();
    const src = join(repoRoot, model![0]!);
    expect(existsSync(join(src, "tokenizer.json"))).toBe(true);
    expect(existsSync(join(src, "onnx/model_quantized.onnx"))).toBe(true);
  });

  it(".dockerignore keeps build output and dependencies out, but not the embedder's model", () => {
    for (const p of ["node_modules", "services/covisit/node_modules", "packages/bus/dist", "services/embedder/src/gen", ".git"])
      expect(ignoredByDocker(p), p).toBe(true);
    for (const p of ["pnpm-lock.yaml", "services/covisit/src/main.ts", "services/embedder/models/default/onnx/model_quantized.onnx", "proto"])
      expect(ignoredByDocker(p), p).toBe(false);
  });
});
