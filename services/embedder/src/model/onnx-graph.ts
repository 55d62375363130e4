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
/** Opset 17 adds LayerNormalization (onnxruntime ≥ 1.14; this repo runs 1.30), still within IR 8. */
export const TRANSFORMER_OPSET = 17n;
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

/** A float32 scalar (dims []), e.g. a constant operand of Mul or Div. */
export const floatScalar = (name: string, value: number): TensorProto => floatTensor(name, [], Float32Array.of(value));

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

export function model(g: GraphProto, metadata: Record<string, string> = {}, docString = "", opset = OPSET): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: IR_VERSION,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: opset })],
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

/** The three int64 inputs of a model in all-MiniLM-L6-v2's layout, each [batch, sequence]. */
const TOKEN_INPUTS = () =>
  ["input_ids", "attention_mask", "token_type_ids"].map((name) => tensorValue(name, TensorProto_DataType.INT64, ["batch", "sequence"]));

/**
 * A BERT-shaped encoder without layers: last_hidden_state[b, s] = (E[input_ids[b, s]] + T[token_type_ids[b, s]])
 * × attention_mask[b, s]. It takes the three BERT inputs so the service feeds it exactly as it feeds MiniLM.
 */
export function lookupEncoderModel(spec: LookupEncoder): ModelProto {
  const { vocabSize: v, dimension: d } = spec;
  if (spec.tokenTable.length !== v * d) throw new Error(`token table must be ${v}×${d}`);
  const typeTable = spec.typeTable ?? new Float32Array(2 * d);
  const { q, scale } = quantizeRows(spec.tokenTable, v, d);
  const g = graph({
    name: spec.name,
    inputs: TOKEN_INPUTS(),
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

/** The shape of a BERT encoder (the fields of its config.json). */
export interface TransformerShape {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxPositions: number;
  typeVocabSize: number;
}

/** How a parameter starts in a freshly initialized BERT: a normal draw, or a LayerNorm's unit gain / zero shift. */
export type ParameterInit = "normal" | "ones" | "zeros";

export interface ParameterSpec {
  name: string;
  dims: number[];
  init: ParameterInit;
}

/** Every parameter of a BERT encoder of `shape` in a fixed order (matrices stored [in, out] for MatMul); MiniLM-L6's without its unused pooler. */
export function transformerParameters(shape: TransformerShape): ParameterSpec[] {
  const { vocabSize: v, hidden: h, intermediate: f } = shape;
  const norm = (name: string): ParameterSpec[] => [
    { name: `${name}.scale`, dims: [h], init: "ones" },
    { name: `${name}.bias`, dims: [h], init: "zeros" },
  ];
  const dense = (name: string, inSize: number, outSize: number): ParameterSpec[] => [
    { name: `${name}.weight`, dims: [inSize, outSize], init: "normal" },
    { name: `${name}.bias`, dims: [outSize], init: "normal" },
  ];
  const params: ParameterSpec[] = [
    { name: "word_embeddings", dims: [v, h], init: "normal" },
    { name: "position_embeddings", dims: [shape.maxPositions, h], init: "normal" },
    { name: "token_type_embeddings", dims: [shape.typeVocabSize, h], init: "normal" },
    ...norm("embeddings_norm"),
  ];
  for (let l = 0; l < shape.layers; l++) {
    const p = `layer${l}`;
    params.push(...dense(`${p}.query`, h, h), ...dense(`${p}.key`, h, h), ...dense(`${p}.value`, h, h), ...dense(`${p}.attention_output`, h, h));
    params.push(...norm(`${p}.attention_norm`), ...dense(`${p}.intermediate`, h, f), ...dense(`${p}.output`, f, h), ...norm(`${p}.output_norm`));
  }
  return params;
}

export interface TransformerEncoder {
  shape: TransformerShape;
  /** One array per transformerParameters(shape) name. */
  weights: ReadonlyMap<string, Float32Array>;
  name: string;
  metadata?: Record<string, string>;
  docString?: string;
}

/**
 * A BERT encoder in standard ONNX ops (opset 17): token + position + token-type embeddings and LayerNorm; per layer multi-head
 * self-attention where padding (attention_mask 0) gets −10,000 before the softmax, residual and LayerNorm, a GELU (erf) feed-forward,
 * residual and LayerNorm. Outputs last_hidden_state and sentence_embedding, the attention-masked mean L2-normalized, so that the
 * embedder pools inside the run as it does for the default model.
 */
export function transformerEncoderModel(spec: TransformerEncoder): ModelProto {
  const { shape } = spec;
  const { hidden: h, heads } = shape;
  if (h % heads !== 0) throw new Error(`hidden ${h} is not a multiple of ${heads} heads`);
  if (shape.layers < 1) throw new Error("a transformer needs at least one layer");
  const headSize = h / heads;
  const initializers = transformerParameters(shape).map(({ name, dims }) => {
    const w = spec.weights.get(name);
    if (!w) throw new Error(`no weights for ${name}`);
    return floatTensor(name, dims, w);
  });
  initializers.push(
    int64Tensor("axis_0", [1], [0n]),
    int64Tensor("axis_1", [1], [1n]),
    int64Tensor("axis_2", [1], [2n]),
    int64Tensor("axes_1_2", [2], [1n, 2n]),
    int64Tensor("heads_shape", [4], [0n, 0n, BigInt(heads), BigInt(headSize)]),
    int64Tensor("hidden_shape", [3], [0n, 0n, BigInt(h)]),
    floatScalar("one", 1),
    floatScalar("half", 0.5),
    floatScalar("sqrt2", Math.SQRT2),
    floatScalar("attention_scale", Math.sqrt(headSize)),
    // BERT's additive mask: exp(−10,000) is exactly 0 in float32, so a padded position adds nothing to any softmax.
    floatScalar("mask_fill", -10_000),
  );
  const nodes: NodeProto[] = [];
  const op = (opType: string, inputs: string[], output: string, attributes?: Record<string, AttributeValue>) => {
    nodes.push(node(opType, inputs, [output], attributes));
    return output;
  };
  const dense = (x: string, name: string) => op("Add", [op("MatMul", [x, `${name}.weight`], `${name}_matmul`), `${name}.bias`], `${name}_out`);
  const layerNorm = (x: string, name: string, output = `${name}_out`) =>
    op("LayerNormalization", [x, `${name}.scale`, `${name}.bias`], output, { axis: -1n, epsilon: 1e-12 });
  const toHeads = (x: string, name: string, perm: bigint[]) => op("Transpose", [op("Reshape", [x, "heads_shape"], `${name}_heads`)], `${name}_t`, { perm });

  const words = op("Gather", ["word_embeddings", "input_ids"], "words", { axis: 0n });
  const sequenceLength = op("Slice", [op("Shape", ["input_ids"], "ids_shape"), "axis_1", "axis_2"], "sequence_length");
  const positions = op("Slice", ["position_embeddings", "axis_0", sequenceLength, "axis_0"], "positions");
  const types = op("Gather", ["token_type_embeddings", "token_type_ids"], "types", { axis: 0n });
  const embedded = op("Add", [op("Add", [words, positions], "words_positions"), types], "embeddings_sum");
  let x = layerNorm(embedded, "embeddings_norm");
  const maskFloat = op("Cast", ["attention_mask"], "mask_float", { to: BigInt(TensorProto_DataType.FLOAT) });
  const maskInverted = op("Sub", ["one", op("Unsqueeze", [maskFloat, "axes_1_2"], "mask_4d")], "mask_inverted");
  const attentionBias = op("Mul", [maskInverted, "mask_fill"], "attention_bias");
  for (let l = 0; l < shape.layers; l++) {
    const p = `layer${l}`;
    const q = toHeads(dense(x, `${p}.query`), `${p}.query`, [0n, 2n, 1n, 3n]);
    const k = toHeads(dense(x, `${p}.key`), `${p}.key`, [0n, 2n, 3n, 1n]);
    const v = toHeads(dense(x, `${p}.value`), `${p}.value`, [0n, 2n, 1n, 3n]);
    const scores = op("Div", [op("MatMul", [q, k], `${p}.scores_raw`), "attention_scale"], `${p}.scores_scaled`);
    const probs = op("Softmax", [op("Add", [scores, attentionBias], `${p}.scores`)], `${p}.probs`, { axis: -1n });
    const contextHeads = op("Transpose", [op("MatMul", [probs, v], `${p}.context_heads`)], `${p}.context_t`, { perm: [0n, 2n, 1n, 3n] });
    const context = op("Reshape", [contextHeads, "hidden_shape"], `${p}.context`);
    const attended = layerNorm(op("Add", [dense(context, `${p}.attention_output`), x], `${p}.attention_residual`), `${p}.attention_norm`);
    const inner = dense(attended, `${p}.intermediate`);
    // GELU as BERT computes it, 0.5·x·(1 + erf(x/√2)); onnxruntime fuses this pattern into one Gelu kernel.
    const erf = op("Erf", [op("Div", [inner, "sqrt2"], `${p}.gelu_scaled`)], `${p}.gelu_erf`);
    const gelu = op("Mul", [op("Mul", [inner, op("Add", [erf, "one"], `${p}.gelu_shifted`)], `${p}.gelu_product`), "half"], `${p}.gelu`);
    const residual = op("Add", [dense(gelu, `${p}.output`), attended], `${p}.output_residual`);
    x = layerNorm(residual, `${p}.output_norm`, l === shape.layers - 1 ? "last_hidden_state" : undefined);
  }
  const maskColumn = op("Unsqueeze", [maskFloat, "axis_2"], "mask_3d");
  const summed = op("ReduceSum", [op("Mul", [x, maskColumn], "masked_hidden"), "axis_1"], "hidden_sum", { keepdims: 0n });
  const count = op("Max", [op("ReduceSum", [maskFloat, "axis_1"], "token_count", { keepdims: 1n }), "one"], "token_count_at_least_1");
  op("LpNormalization", [op("Div", [summed, count], "mean_pooled")], SENTENCE_EMBEDDING, { axis: -1n, p: 2n });

  const g = graph({
    name: spec.name,
    inputs: TOKEN_INPUTS(),
    outputs: [
      tensorValue("last_hidden_state", TensorProto_DataType.FLOAT, ["batch", "sequence", h]),
      tensorValue(SENTENCE_EMBEDDING, TensorProto_DataType.FLOAT, ["batch", h]),
    ],
    initializers,
    nodes,
  });
  return model(g, spec.metadata, spec.docString, TRANSFORMER_OPSET);
}
