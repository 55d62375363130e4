import type http from "node:http";
import { Code, ConnectError, createContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { invokeUnaryImplementation, mergeNonProtocolHeaders, validateReadWriteMaxBytes } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, contentTypeUnaryJson, errorToJsonBytes, trailerMux } from "@connectrpc/connect/protocol-connect";
import { headerRecord, requestHeaders, unaryRouteTable, type UnaryRoute } from "./unary-routes.js";

/** A unary method and its implementation, as given to the router. */
export type PlainJsonRoute = UnaryRoute;

// As connect-es reads a unary JSON call's content type (`contentTypeUnaryRegExp`).
const JSON_BODY = /^application\/json(?:; ?charset=utf-?8)?$/i;
/** Nothing aborts a plain call: it has no deadline, and its answer is small and soon written. */
const NEVER_ABORTED = new AbortController().signal;

/**
 * The plainest call of a hot unary method, answered without connect-es's per-request machinery: a Connect unary POST over
 * HTTP/1.1 with a JSON body of a stated length within `maxBytes`, not compressed, without a deadline (`connect-timeout-ms`). The
 * body is read into one buffer, parsed and serialized by connect-es's own serialization, the interceptors and the implementation
 * invoked by connect-es's own `invokeUnaryImplementation`, errors written as connect-es writes them (its JSON and HTTP status),
 * and the answer written with one `end`. What is left out is per request: the universal request and response objects, the async
 * iterables over the body, the handler context's deadline timer and abort controllers (and the DOMException each call's end made),
 * and compressing the answer (a client's Accept-Encoding allows, never requires it). Any other call returns false: connect-es
 * serves it as before.
 */
export function plainJsonCalls(routes: PlainJsonRoute[], interceptors: Interceptor[], maxBytes: number) {
  const limits = validateReadWriteMaxBytes(maxBytes, undefined, undefined);
  const byPath = unaryRouteTable(routes, limits);
  return (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const route = byPath.get(req.url ?? "");
    if (!route || req.method !== "POST" || req.httpVersionMajor !== 1) return false;
    const h = req.headers;
    if (!JSON_BODY.test(h["content-type"] ?? "") || h["transfer-encoding"] !== undefined || h["connect-timeout-ms"] !== undefined) return false;
    if ((h["content-encoding"] ?? "identity") !== "identity" || (h["connect-protocol-version"] ?? "1") !== "1") return false;
    const length = Number(h["content-length"] ?? Number.NaN);
    if (!Number.isSafeInteger(length) || length > limits.readMaxBytes) return false;

    const body = Buffer.allocUnsafe(length);
    let read = 0;
    req.on("data", (chunk: Buffer) => {
      read += chunk.copy(body, read);
    });
    req.once("error", () => res.destroy());
    req.once("end", () => {
      const requestHeader = requestHeaders(h);
      const context: HandlerContext = {
        service: route.method.parent,
        method: route.method,
        protocolName: "connect",
        requestMethod: "POST",
        url: `http://${h.host ?? "localhost"}${req.url}`,
        signal: NEVER_ABORTED,
        timeoutMs: () => undefined,
        requestHeader,
        responseHeader: new Headers({ "content-type": contentTypeUnaryJson }),
        responseTrailer: new Headers(),
        values: createContextValues(),
      };
      let status = 200;
      let answer: Uint8Array;
      const respond = () => {
        // Trailers travel as trailer- headers in a unary Connect answer, muxed as connect-es muxes them.
        try {
          const headers = headerRecord(trailerMux(context.responseHeader, context.responseTrailer));
          headers["content-length"] = String(answer.byteLength);
          res.writeHead(status, headers);
          res.end(answer);
        } catch {
          // A header the implementation set with a control character cannot be written; thrown here, it ended the process.
          if (res.headersSent) return void res.destroy();
          const body = errorToJsonBytes(new ConnectError("internal error", Code.Internal), {});
          res.writeHead(codeToHttpStatus(Code.Internal), { "content-type": contentTypeUnaryJson, "content-length": String(body.byteLength) });
          res.end(body);
        }
      };
      (async () => {
        const input = route.serialization.getI(false).parse(body.subarray(0, read));
        const output = await invokeUnaryImplementation(route.spec, context, input, interceptors);
        return route.serialization.getO(false).serialize(output);
      })().then(
        (bytes) => {
          answer = bytes;
          respond();
        },
        (e: unknown) => {
          const error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
          status = codeToHttpStatus(error.code);
          context.responseHeader.set("content-type", contentTypeUnaryJson);
          if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
          answer = errorToJsonBytes(error, {});
          respond();
        },
      );
    });
    return true;
  };
}
