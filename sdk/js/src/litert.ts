/**
 * The LiteRT.js backend (@litertjs/core) for .tflite bundles in the browser: pass the module after
 * `await loadLiteRt(wasmDir)`, e.g. `litertRunner(await import("@litertjs/core"))`. TFLite bundles
 * take one uint8 NHWC face per call (batch 1); an int8 output is dequantized with
 * `output.quantized_as` (scale, zero_point) as the integration contract says.
 */
import type { BundleMeta, Runner, RunnerFactory } from "./bundle.js";

interface LiteRtTensor {
  toTypedArray(): ArrayLike<number>;
  delete(): void;
}
/** The part of @litertjs/core the SDK uses. */
export interface LiteRtModule {
  loadAndCompile(model: Uint8Array, options?: { accelerator?: string }): Promise<{ run(input: LiteRtTensor | LiteRtTensor[]): Promise<LiteRtTensor[]>; delete?(): void }>;
  Tensor: new (data: Uint8Array | Float32Array, shape?: number[]) => LiteRtTensor;
}

export function litertRunner(litert: LiteRtModule, accelerator = "wasm"): RunnerFactory {
  return async (model: Uint8Array, meta: BundleMeta): Promise<Runner> => {
    let compiled: Awaited<ReturnType<LiteRtModule["loadAndCompile"]>>;
    try {
      compiled = await litert.loadAndCompile(model, { accelerator });
    } catch (exc) {
      // the model file itself (loadBundle refuses it as model_load), not a missing runtime
      throw new Error(`LiteRT.js could not compile ${meta.model_file}: ${(exc as Error).message}`);
    }
    const q = (meta.output as { quantized_as?: { scale: number; zero_point: number } }).quantized_as;
    return {
      name: "litert",
      maxBatch: 1,
      async run(input, dims) {
        const t = new litert.Tensor(input, dims);
        try {
          const [out] = await compiled.run(t);
          const data = out.toTypedArray();
          out.delete();
          return q ? Float32Array.from(data, (v) => (v - q.zero_point) * q.scale) : Float32Array.from(data);
        } finally {
          t.delete();
        }
      },
      async dispose() {
        compiled.delete?.();
      },
    };
  };
}
