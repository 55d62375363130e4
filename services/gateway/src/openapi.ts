// The OpenAPI document of the gateway's Connect JSON routes, generated from the protos (`pnpm openapi` writes openapi.json; a
// test fails when the protos changed and the file was not written again). Connect's unary JSON: POST /<service>/<Method> with the
// request message as a proto3 JSON body, the response message as the body of a 200, a Connect error otherwise.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileRegistry, fromBinary, ScalarType, type DescEnum, type DescField, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { getComments } from "@bufbuild/protoplugin";

type Schema = Record<string, unknown>;

/** The comments written above (or after) a definition in its proto file. */
function describe(desc: DescMessage | DescField | DescEnum | DescService | DescService["methods"][number]): { description?: string } {
  const c = getComments(desc);
  const text = [c.leading, c.trailing]
    .filter((t): t is string => !!t?.trim())
    .map((t) => t.trim().replace(/\n /g, "\n"))
    .join("\n");
  return text ? { description: text } : {};
}

/** A scalar as proto3 JSON writes it: 64-bit integers as decimal strings (numbers are taken too), bytes as base64. */
function scalarSchema(t: ScalarType): Schema {
  switch (t) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: ["string", "integer"], format: "int64" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: ["string", "integer"], format: "uint64" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32" };
    default:
      return { type: "integer", format: "int32" };
  }
}

const ref = (typeName: string) => ({ $ref: `#/components/schemas/${typeName}` });
const enumSchema = (e: DescEnum): Schema => ({ type: "string", enum: e.values.map((v) => v.name) });

/** The OpenAPI 3.1 document of `service`'s unary methods over Connect's JSON, every message it reaches under components. */
export function openApiDocument(service: DescService): Schema {
  const schemas: Record<string, Schema> = {};
  const visit = (m: DescMessage) => {
    if (schemas[m.typeName]) return;
    const properties: Record<string, Schema> = {};
    schemas[m.typeName] = { type: "object", ...describe(m), properties, additionalProperties: false };
    const fieldSchema = (f: DescField): Schema => {
      switch (f.fieldKind) {
        case "scalar":
          return scalarSchema(f.scalar);
        case "enum":
          return enumSchema(f.enum);
        case "message":
          visit(f.message);
          return ref(f.message.typeName);
        case "list": {
          if (f.listKind === "message") visit(f.message);
          const items = f.listKind === "scalar" ? scalarSchema(f.scalar) : f.listKind === "enum" ? enumSchema(f.enum) : ref(f.message.typeName);
          return { type: "array", items };
        }
        case "map": {
          if (f.mapKind === "message") visit(f.message);
          const values = f.mapKind === "scalar" ? scalarSchema(f.scalar) : f.mapKind === "enum" ? enumSchema(f.enum) : ref(f.message.typeName);
          return { type: "object", additionalProperties: values };
        }
      }
    };
    for (const f of m.fields) {
      const oneof = f.oneof
        ? { description: [describe(f).description, `One of ${f.oneof.fields.map((o) => o.jsonName).join(", ")}.`].filter(Boolean).join("\n") }
        : describe(f);
      properties[f.jsonName] = { ...fieldSchema(f), ...oneof };
    }
  };
  const paths: Record<string, Schema> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    visit(method.input);
    visit(method.output);
    const json = (typeName: string) => ({ content: { "application/json": { schema: ref(typeName) } } });
    paths[`/${service.typeName}/${method.name}`] = {
      post: {
        operationId: method.name,
        tags: [service.name],
        ...describe(method),
        requestBody: { required: true, ...json(method.input.typeName) },
        responses: {
          "200": { description: "The answer.", ...json(method.output.typeName) },
          default: {
            description: "Refused or failed: a Connect error (invalid_argument, not_found, permission_denied, unauthenticated, resource_exhausted, …).",
            ...json("connect.error"),
          },
        },
      },
    };
  }
  schemas["connect.error"] = {
    type: "object",
    description: "A Connect error: the code, and the message naming the field at fault.",
    properties: { code: { type: "string" }, message: { type: "string" }, details: { type: "array", items: { type: "object" } } },
    required: ["code"],
  };
  const sorted = Object.fromEntries(
    Object.keys(schemas)
      .sort()
      .map((k) => [k, schemas[k]!]),
  );
  return {
    openapi: "3.1.0",
    info: { title: service.typeName, version: "v1", ...describe(service) },
    servers: [{ url: "/" }],
    // Open by default; where keys or user tokens are configured, one of them (see the gateway README).
    security: [{}, { apiKey: [] }, { bearer: [] }],
    paths,
    components: {
      schemas: sorted,
      securitySchemes: {
        apiKey: { type: "apiKey", in: "header", name: "x-api-key" },
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
      },
    },
  };
}

/** The protos with their comments, as `buf build` compiles them from the repository's proto directory. */
export function compiledProtos(repoRoot: string) {
  const dir = mkdtempSync(join(tmpdir(), "recsys-protos-"));
  try {
    const out = join(dir, "protos.binpb");
    const buf = spawnSync(join(repoRoot, "node_modules/.bin/buf"), ["build", "--as-file-descriptor-set", "-o", out], { cwd: repoRoot, encoding: "utf8" });
    if (buf.status !== 0) throw new Error(`buf build failed: ${buf.stderr}`);
    return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(out)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The gateway's document, as openapi.json holds it: generated from the protos in `repoRoot`. */
export function gatewayOpenApi(repoRoot: string): string {
  const service = compiledProtos(repoRoot).getService("recsys.gateway.v1.GatewayService");
  if (!service) throw new Error("recsys.gateway.v1.GatewayService not in the protos");
  return `${JSON.stringify(openApiDocument(service), null, 2)}\n`;
}
