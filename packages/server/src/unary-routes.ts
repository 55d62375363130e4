import type { DescMethodUnary } from "@bufbuild/protobuf";
import { createMethodImplSpec, type ConnectRouter, type HandlerContext, type MethodImplSpec } from "@connectrpc/connect";
import { createMethodSerializationLookup, type MethodSerializationLookup } from "@connectrpc/connect/protocol";

/** A unary method and its implementation, as given to the router. */
export interface UnaryRoute {
  // biome-ignore lint/suspicious/noExplicitAny: any method of any service; the router is as loose.
  method: DescMethodUnary<any, any>;
  // biome-ignore lint/suspicious/noExplicitAny: the implementation of that method.
  impl: (req: any, context: HandlerContext) => Promise<any>;
}

export interface UnaryRouteEntry {
  method: UnaryRoute["method"];
  spec: MethodImplSpec & { kind: "unary" };
  // biome-ignore lint/suspicious/noExplicitAny: the method's own messages.
  serialization: MethodSerializationLookup<any, any>;
}

/** Routes by request path (`/package.Service/Method`), each with connect-es's own implementation spec and serialization. */
export function unaryRouteTable(routes: UnaryRoute[], limits: { readMaxBytes: number; writeMaxBytes: number }): Map<string, UnaryRouteEntry> {
  return new Map(
    routes.map((r) => [
      `/${r.method.parent.typeName}/${r.method.name}`,
      {
        method: r.method,
        spec: createMethodImplSpec(r.method, r.impl) as MethodImplSpec & { kind: "unary" },
        serialization: createMethodSerializationLookup(r.method, undefined, undefined, limits),
      },
    ]),
  );
}

/** A Node request's headers as the handler context's Headers, HTTP/2's pseudo-headers (:path, …) left out as connect-node leaves them. */
export function requestHeaders(h: NodeJS.Dict<string | string[]>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(":")) continue;
    if (typeof value === "string") out.append(name, value);
    else if (value) for (const v of value) out.append(name, v);
  }
  return out;
}

/** Headers as the plain object Node's `writeHead` and `addTrailers` take. */
export function headerRecord(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((value, name) => {
    out[name] = value;
  });
  return out;
}

/**
 * The router as the services' route functions see it, noting every unary method registered without options of its own: what the
 * plain paths may serve. Everything is registered with connect-es as before.
 */
export function recordingUnaryRoutes(router: ConnectRouter, into: UnaryRoute[]): ConnectRouter {
  const recording: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, implementation, options) {
      if (options === undefined) {
        for (const method of service.methods) {
          const fn = (implementation as Record<string, unknown>)[method.localName];
          if (method.methodKind === "unary" && typeof fn === "function")
            into.push({ method: method as UnaryRoute["method"], impl: fn.bind(implementation) as UnaryRoute["impl"] });
        }
      }
      router.service(service, implementation, options);
      return recording;
    },
    rpc(method, impl, options) {
      if (options === undefined && method.methodKind === "unary") into.push({ method: method as UnaryRoute["method"], impl: impl as UnaryRoute["impl"] });
      router.rpc(method, impl, options);
      return recording;
    },
  };
  return recording;
}
