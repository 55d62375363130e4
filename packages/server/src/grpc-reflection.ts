import { create, createRegistry, toBinary, type DescFile, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@recsys/contracts/grpc/reflection/v1/reflection";
import * as v1alpha from "@recsys/contracts/grpc/reflection/v1alpha/reflection";

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
/** What one answer holds, the same in both versions of the protocol. */
type Answer = Omit<MessageInitShape<typeof v1.ServerReflectionResponseSchema>, "originalRequest" | "$typeName">;

/** Every file `files` import, directly or not, each once, the imports before the files importing them. */
function withImports(files: DescFile[]): DescFile[] {
  const out = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (out.has(f.name)) return;
    for (const d of f.dependencies) visit(d);
    out.set(f.name, f);
  };
  for (const f of files) visit(f);
  return [...out.values()];
}

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) for the services registered on `router` so far and for itself: the list
 * of services, and the file descriptors of a file or of the file defining a symbol, with every file they import, so that grpcurl,
 * buf curl and grpcui call the services without the proto files. Extensions are not used here: asked about one, it answers NotFound.
 */
export function reflectionRoutes(router: ConnectRouter): void {
  const services: DescService[] = [...new Map(router.handlers.map((h) => [h.service.typeName, h.service])).values()];
  services.push(v1.ServerReflection, v1alpha.ServerReflection);
  const files = withImports(services.map((s) => s.file));
  const registry = createRegistry(...files);
  const byName = new Map(files.map((f) => [f.name, f]));
  const encoded = new Map(files.map((f) => [f.name, toBinary(FileDescriptorProtoSchema, f.proto)]));
  const names = services.map((s) => s.typeName).sort();

  const notFound = (what: string): Answer => ({
    messageResponse: { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } },
  });
  const descriptors = (file: DescFile | undefined, what: string): Answer =>
    file
      ? { messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: withImports([file]).map((f) => encoded.get(f.name)!) } } }
      : notFound(what);
  /** The file defining a type, a service, or a service's method (`pkg.Service.Method`). */
  const fileOf = (symbol: string): DescFile | undefined => {
    const found = registry.get(symbol) ?? registry.getService(symbol.slice(0, Math.max(0, symbol.lastIndexOf("."))));
    return found?.file;
  };
  const answer = (req: Request): Answer => {
    const m = req.messageRequest;
    switch (m.case) {
      case "listServices":
        return { messageResponse: { case: "listServicesResponse", value: { service: names.map((name) => ({ name })) } } };
      case "fileByFilename":
        return descriptors(byName.get(m.value), `file ${m.value}`);
      case "fileContainingSymbol":
        return descriptors(fileOf(m.value), `symbol ${m.value}`);
      case "fileContainingExtension":
        return notFound(`extension ${m.value.extensionNumber} of ${m.value.containingType}`);
      case "allExtensionNumbersOfType":
        return notFound(`extensions of ${m.value}`);
      default:
        return { messageResponse: { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "no request given" } } };
    }
  };

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield create(v1.ServerReflectionResponseSchema, { ...answer(req), validHost: req.host, originalRequest: req });
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1alpha.ServerReflectionResponseSchema, {
          ...(answer(req) as MessageInitShape<typeof v1alpha.ServerReflectionResponseSchema>),
          validHost: req.host,
          originalRequest: req,
        });
      }
    },
  });
}
