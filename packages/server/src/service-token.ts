import type { Logger } from "@recsys/logging";

/** Whether a listen address is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * The service token a backend requires, or undefined: without one it serves anyone, which it allows
 * on a loopback HOST only; elsewhere it exits saying how to configure one.
 */
export function serviceTokenFor(config: { HOST: string; SERVICE_TOKEN: string }, service: string, logger: Logger): string | undefined {
  if (config.SERVICE_TOKEN) return config.SERVICE_TOKEN;
  if (!isLoopback(config.HOST)) {
    logger.fatal(
      { host: config.HOST },
      `${service}: refusing to serve on a non-loopback HOST without SERVICE_TOKEN (a random secret of at least 32 characters shared by the services), or listen on HOST=127.0.0.1`,
    );
    process.exit(78);
  }
  logger.warn({ host: config.HOST }, `${service}: no SERVICE_TOKEN: its RPCs are open to anyone who can reach this loopback address`);
  return undefined;
}
