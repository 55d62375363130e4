import { create, toBinary } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "../gen/onnx_pb.js";

/** IR 8 and opset 13 are read by every onnxruntime since 1.10; opset 13 has Unsqueeze with axes as an input. */
export const IR_VERSION = 8n;
export const OPSET = 13n;
export { TensorProto_DataType as DataType };

/** ONNX raw_data is little-endian; copy through a DataView only on a big-endian host. */
function littleEndianBytes(view: Float32Array | BigInt64Array | Int8Array): Uint8Array {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  if (view instanceof Int8Array || new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return bytes.slice();
  const out = new Uint8Array(view.byteLength);
  const dv = new DataView(out.buffer);
  if (view instanceof Float32Array) view.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  else view.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  return out;
}

function checkedDims(name: string, dims: readonly number[], length: number): bigint[] {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== length) throw new Error(`tensor ${name}: dims [${dims.join(", ")}] hold ${size} values, got ${length}`);
  return dims.map(BigInt);
}

export function floatTensor(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: checkedDims(name, dims, data.length),
    dataType: TensorProto_DataType.FLOAT,
    rawData: littleEndianBytes(data),
  });
}

export function int8Tensor(name: string, dims: readonly number[], data: Int8Array): TensorProto {
  return create(TensorProtoSchema, { name, dims: checkedDims(name, dims, data.length), dataType: TensorProto_DataType.INT8, rawData: littleEndianBytes(data) });
}

export function int64Tensor(name: string, dims: readonly number[], data: readonly bigint[]): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: checkedDims(name, dims, data.length),
    dataType: TensorProto_DataType.INT64,
    rawData: littleEndianBytes(BigInt64Array.from(data)),
  });
}

export type AttributeValue = number | bigint | readonly bigint[] | TensorProto;

function attribute(name: string, value: AttributeValue): AttributeProto {
  if (typeof value === "bigint") return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: value });
  if (typeof value === "number") return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
  if (Array.isArray(value)) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: [...(value as readonly bigint[])] });
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.TENSOR, t: value as TensorProto });
}

/** A node of the default ONNX domain; integer attributes are bigints, float attributes numbers. */
export function node(opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Record<string, AttributeValue> = {}): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: [...inputs],
    output: [...outputs],
    name: `${opType}_${outputs[0] ?? ""}`,
    attribute: Object.entries(attributes).map(([k, v]) => attribute(k, v)),
  });
}

/** A graph input or output; string dims are symbolic (e.g. "batch"). */
export function tensorValue(name: string, elemType: TensorProto_DataType, dims: readonly (number | string)[]): ValueInfoProto {
  const dim = dims.map((d) =>
    create(TensorShapeProto_DimensionSchema, { value: typeof d === "number" ? { case: "dimValue", value: BigInt(d) } : { case: "dimParam", value: d } }),
  );
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: { case: "tensorType", value: create(TypeProto_TensorSchema, { elemType, shape: create(TensorShapeProtoSchema, { dim }) }) },
    }),
  });
}

export interface GraphParts {
  name: string;
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  initializers: TensorProto[];
  nodes: NodeProto[];
}

export function graph(parts: GraphParts): GraphProto {
  return create(GraphProtoSchema, { name: parts.name, input: parts.inputs, output: parts.outputs, initializer: parts.initializers, node: parts.nodes });
}

export function model(g: GraphProto, metadata: Record<string, string> = {}, docString = ""): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: IR_VERSION,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: OPSET })],
    producerName: "@recsys/embedder",
    producerVersion: "1",
    docString,
    graph: g,
    metadataProps: Object.entries(metadata).map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
  });
}

export function serializeModel(m: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, m);
}

/** Symmetric per-row int8 quantization: row r ≈ q[r] * scale[r]. */
export function quantizeRows(table: Float32Array, rows: number, dim: number): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(rows * dim);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let d = 0; d < dim; d++) max = Math.max(max, Math.abs(table[r * dim + d]!));
    if (max === 0) continue;
    const s = max / 127;
    scale[r] = s;
    for (let d = 0; d < dim; d++) q[r * dim + d] = Math.round(table[r * dim + d]! / s);
  }
  return { q, scale };
}

/** The optional pooled output: one vector per row of the batch, to be L2-normalized. */
export const SENTENCE_EMBEDDING = "sentence_embedding";

export interface LookupEncoder {
  /** [vocab, dim] row-major token vectors; stored int8 with one scale per row. */
  tokenTable: Float32Array;
  vocabSize: number;
  dimension: number;
  /** [2, dim] vectors added per token_type_id; zeros when the model ignores segments. */
  typeTable?: Float32Array;
  name: string;
  metadata?: Record<string, string>;
  docString?: string;
  /**
   * Also output sentence_embedding[b] = the sum over s of last_hidden_state[b, s], the masked mean's direction, computed in the run
   * so a caller need not fetch and pool [batch, sequence, dim] floats. MiniLM's export has no such output (its stand-in leaves it out).
   */
  pooledOutput?: boolean;
}

/**
 * A BERT-shaped encoder without layers: last_hidden_state[b, s] = (E[input_ids[b, s]] + T[token_type_ids[b, s]])
 * × attention_mask[b, s]. It takes the three BERT inputs so the service feeds it exactly as it feeds MiniLM.
 */
export function lookupEncoderModel(spec: LookupEncoder): ModelProto {
  const { vocabSize: v, dimension: d } = spec;
  if (spec.tokenTable.length !== v * d) throw new Error(`token table must be ${v}×${d}`);
  const typeTable = spec.typeTable ?? new Float32Array(2 * d);
  const { q, scale } = quantizeRows(spec.tokenTable, v, d);
  const ids = ["batch", "sequence"];
  const g = graph({
    name: spec.name,
    inputs: [
      tensorValue("input_ids", TensorProto_DataType.INT64, ids),
      tensorValue("attention_mask", TensorProto_DataType.INT64, ids),
      tensorValue("token_type_ids", TensorProto_DataType.INT64, ids),
    ],
    outputs: [
      tensorValue("last_hidden_state", TensorProto_DataType.FLOAT, ["batch", "sequence", d]),
      ...(spec.pooledOutput ? [tensorValue(SENTENCE_EMBEDDING, TensorProto_DataType.FLOAT, ["batch", d])] : []),
    ],
    initializers: [
      int8Tensor("token_table_q", [v, d], q),
      floatTensor("token_table_scale", [v], scale),
      floatTensor("type_table", [2, d], typeTable),
      int64Tensor("last_axis", [1], [2n]),
      ...(spec.pooledOutput ? [int64Tensor("sequence_axis", [1], [1n])] : []),
    ],
    nodes: [
      node("Gather", ["token_table_q", "input_ids"], ["token_q"], { axis: 0n }),
      node("Cast", ["token_q"], ["token_unscaled"], { to: BigInt(TensorProto_DataType.FLOAT) }),
      node("Gather", ["token_table_scale", "input_ids"], ["token_scale"], { axis: 0n }),
      node("Unsqueeze", ["token_scale", "last_axis"], ["token_scale_3d"]),
      node("Mul", ["token_unscaled", "token_scale_3d"], ["token_vectors"]),
      node("Gather", ["type_table", "token_type_ids"], ["type_vectors"], { axis: 0n }),
      node("Add", ["token_vectors", "type_vectors"], ["hidden_unmasked"]),
      node("Cast", ["attention_mask"], ["mask_float"], { to: BigInt(TensorProto_DataType.FLOAT) }),
      node("Unsqueeze", ["mask_float", "last_axis"], ["mask_3d"]),
      node("Mul", ["hidden_unmasked", "mask_3d"], ["last_hidden_state"]),
      ...(spec.pooledOutput ? [node("ReduceSum", ["last_hidden_state", "sequence_axis"], [SENTENCE_EMBEDDING], { keepdims: 0n })] : []),
    ],
  });
  return model(g, spec.metadata, spec.docString);
}
