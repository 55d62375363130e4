import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Bus } from "@recsys/bus";
import { ArchiveService } from "@recsys/contracts/archive/v1/archive";
import type { TableArchiver } from "./archiver.js";

export function archiveRoutes(archivers: TableArchiver[], bus: Bus) {
  return (router: ConnectRouter) =>
    router.service(ArchiveService, {
      async progress() {
        const tables = await Promise.all(
          archivers
            .flatMap((a) => [{ a, p: { table: a.table.name, ...a.progress() } }, ...a.companionProgress().map((p) => ({ a, p }))])
            .map(async ({ a, p }) => {
              const stream = a.table.stream(bus.topology);
              const info = await bus.jsm.streams.info(stream).catch((err: unknown) => {
                throw new ConnectError(`progress unavailable: ${String(err)}`, Code.Unavailable);
              });
              return {
                table: p.table,
                stream,
                archivedThrough: BigInt(p.archivedThrough),
                lastSequence: BigInt(info.state.last_seq),
                rows: BigInt(p.rows),
                files: BigInt(p.files),
                bufferedRows: BigInt(p.bufferedRows),
                lostMessages: BigInt(p.lostMessages),
                undecodableMessages: BigInt(p.undecodableMessages),
              };
            }),
        );
        return { tables };
      },
    });
}
