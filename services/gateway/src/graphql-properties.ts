import { GraphQLScalarType, Kind, type ValueNode } from "graphql";
import { createGraphQLError } from "graphql-yoga";

/** A property value as the proto takes it. */
export type PropertyValueInit = { kind: { case: "text"; value: string } | { case: "number"; value: number } };

const refuse = (message: string) => createGraphQLError(`properties${message}`, { extensions: { code: "INVALID_ARGUMENT" } });

function fromObject(value: unknown): Record<string, PropertyValueInit> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw refuse(": must be an object of names to texts or numbers");
  // Without a prototype: on a plain object a property named __proto__ set the prototype and was lost, never refused by ingest.
  const out: Record<string, PropertyValueInit> = Object.create(null);
  for (const [name, v] of Object.entries(value)) {
    if (typeof v === "string") out[name] = { kind: { case: "text", value: v } };
    else if (typeof v === "number") out[name] = { kind: { case: "number", value: v } };
    else throw refuse(`.${name}: must be a text or a number`);
  }
  return out;
}

/** An inline object literal, with variables of the document resolved. */
function literal(node: ValueNode, variables: Record<string, unknown> | null | undefined): unknown {
  switch (node.kind) {
    case Kind.OBJECT:
      return Object.fromEntries(node.fields.map((f) => [f.name.value, literal(f.value, variables)]));
    case Kind.STRING:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    default:
      return undefined;
  }
}

/**
 * Properties of a click: an object of names to texts or numbers. Names, counts and lengths are
 * ingest's to check (its refusal names the property); here only the shape.
 */
export const PROPERTIES = new GraphQLScalarType({
  name: "Properties",
  serialize: (value) => value,
  parseValue: fromObject,
  parseLiteral: (node, variables) => fromObject(literal(node, variables)),
});
