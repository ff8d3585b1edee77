/**
 * The ONNX Runtime backend over the JS API that onnxruntime-node, onnxruntime-web and
 * onnxruntime-react-native share (InferenceSession.create / Tensor / run): pass whichever module
 * the platform has, e.g. `ortRunner(await import("onnxruntime-node"))`.
 */
import type { BundleMeta, Runner, RunnerFactory } from "./bundle.js";
import { halfToFloat } from "./codecs.js";
import { EdgefaceError } from "./errors.js";

/** The part of the onnxruntime-common API the SDK uses. */
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: Uint8Array | Float32Array, dims: readonly number[]) => unknown;
}
interface OrtSession {
  readonly inputNames: readonly string[];
  /** onnxruntime-common >= 1.22: per input {name, isTensor, type} */
  readonly inputMetadata?: readonly { name: string; isTensor?: boolean; type?: string }[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: ArrayLike<number> | Uint16Array; type: string; dims: readonly number[] }>>;
  release?(): Promise<void>;
}

export interface OrtOptions {
  /** intra-op threads (0: the runtime's default) */
  threads?: number;
  /** ONNX Runtime execution providers, e.g. ["wasm"] or ["cpu"] */
  executionProviders?: string[];
}

export function ortRunner(ort: OrtModule, options: OrtOptions = {}): RunnerFactory {
  return async (model: Uint8Array, meta: BundleMeta): Promise<Runner> => {
    let session: OrtSession;
    const opts: Record<string, unknown> = { graphOptimizationLevel: "all" };
    if (options.threads) opts.intraOpNumThreads = options.threads;
    if (options.executionProviders) opts.executionProviders = options.executionProviders;
    try {
      session = await ort.InferenceSession.create(model, opts);
    } catch (exc) {
      // the model file itself (loadBundle refuses it as model_load), not a missing runtime
      throw new Error(`ONNX Runtime could not open ${meta.model_file}: ${(exc as Error).message}`);
    }
    const inputName = session.inputNames.includes(meta.input.name) ? meta.input.name : session.inputNames[0];
    const outputName = session.outputNames.includes(meta.output.name) ? meta.output.name : session.outputNames[0];
    const fixedBatch = typeof meta.input.shape[0] === "number" ? (meta.input.shape[0] as number) : 0;
    const inputType = meta.input.normalization_in_graph ? meta.input.dtype : "float32";
    // what the graph really takes, as the Python backend reads it: uint8, or float32 for anything else
    const declared = session.inputMetadata?.[0]?.type;
    return {
      name: "onnxruntime",
      ...(declared !== undefined ? { inputDtype: declared.includes("uint8") ? "uint8" : "float32" } : {}),
      maxBatch: fixedBatch,
      async run(input, dims) {
        const feeds = { [inputName]: new ort.Tensor(inputType, input, dims) };
        const out = (await session.run(feeds))[outputName];
        if (out.type === "float32") return Float32Array.from(out.data as ArrayLike<number>);
        // float16 outputs arrive as raw half bits (Uint16Array) or, in newer runtimes, as Float16Array values
        if (out.type === "float16") return out.data instanceof Uint16Array ? Float32Array.from(out.data, halfToFloat) : Float32Array.from(out.data as ArrayLike<number>);
        throw new EdgefaceError("backend", `${meta.model_file}: output ${outputName} is ${out.type}; expected float32 or float16`);
      },
      async dispose() {
        await session.release?.();
      },
    };
  };
}
