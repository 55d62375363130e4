import type http from "node:http";
import type http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";

/**
 * The client's address of each HTTP/2 session that came through a sniffer. http2 reads such a connection through a JS stream of its
 * own, whose `remoteAddress` is undefined: a request's socket has no address to give.
 */
const sessionPeers = new WeakMap<http2.Http2Session, string>();

/** The address of the client at the other end of an HTTP/2 session, if it came through a sniffer. */
export function sessionPeer(session: http2.Http2Session | undefined): string | undefined {
  return session && sessionPeers.get(session);
}

/**
 * A server for one port that hands a connection opening with the HTTP/2 preface (gRPC's h2c) to `h2`, and any other to `h1`.
 * Open sockets are kept in `sockets` so that a shutdown can cut them.
 */
export function protocolSniffer(h1: http.Server, h2: http2.Http2Server, sockets: Set<net.Socket>, firstBytesTimeoutMs: number): net.Server {
  // http2 starts the session of a connection it is handed, and tells of it, before `emit("connection")` returns.
  let arriving: net.Socket | undefined;
  h2.on("session", (session) => {
    if (arriving?.remoteAddress) sessionPeers.set(session, arriving.remoteAddress);
  });
  return net.createServer((socket) => {
    // A connection that says nothing is closed: idle sockets cannot pile up before a server sees them.
    socket.setTimeout(firstBytesTimeoutMs, () => socket.destroy());
    // Small RPC answers go out at once: with Nagle's algorithm an HTTP/2 frame written after a
    // previous one waits for the peer's delayed ACK, about 40 ms per call.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 3) return;
      socket.off("data", onData);
      socket.setTimeout(0);
      if (head.subarray(0, 3).toString("latin1") === "PRI") {
        // http2 reads the native handle directly and would miss bytes put back with unshift.
        arriving = socket;
        try {
          h2.emit("connection", new ReplayedSocket(socket, head));
        } finally {
          arriving = undefined;
        }
      } else {
        socket.pause();
        socket.unshift(head);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
}

/** A socket whose first bytes were already read: replays them, then passes everything through. */
class ReplayedSocket extends Duplex {
  constructor(
    private readonly socket: net.Socket,
    head: Buffer,
  ) {
    super();
    this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (err) => this.destroy(err));
  }
  get remoteAddress() {
    return this.socket.remoteAddress;
  }
  get remotePort() {
    return this.socket.remotePort;
  }
  override _read() {
    this.socket.resume();
  }
  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void) {
    this.socket.write(chunk, encoding, callback);
  }
  // http2 hands over an answer's frames together (headers, each data frame's header and payload); written one by one, each went
  // out in a syscall and a packet of its own, a turn of the event loop after the one before. Together they go in one writev.
  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (err?: Error | null) => void) {
    this.socket.cork();
    chunks.forEach(({ chunk, encoding }, i) => this.socket.write(chunk, encoding, i === chunks.length - 1 ? callback : undefined));
    this.socket.uncork();
  }
  override _final(callback: (err?: Error | null) => void) {
    this.socket.end(callback);
  }
  override _destroy(err: Error | null, callback: (err?: Error | null) => void) {
    this.socket.destroy(err ?? undefined);
    callback(err);
  }
}
