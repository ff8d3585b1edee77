/**
 * Galleries (edgeface/runtime/gallery.py): one template per identity in a codec, the model's
 * fingerprint recorded at creation, a gallery of another model refused, exact search.
 *
 * The storage is a GalleryStorage (SQLite in Node: gallery-sqlite.ts, the same file format as the
 * Python gallery; IndexedDB in the browser: gallery-idb.ts); scoring and search are here, once.
 */
import { modelFingerprint, type ModelCard } from "./card.js";
import { getCodec, type Codec } from "./codecs.js";
import { EdgefaceError } from "./errors.js";

export interface Match {
  name: string;
  score: number;
}

export interface GalleryMeta {
  kit_version: string;
  codec: string;
  embedding_size: string;
  model_name: string;
  model_fingerprint: string;
  model_card: string;
  created_at: string;
  [key: string]: string;
}

export interface IdentityRow {
  name: string;
  template: Uint8Array;
  n_images: number;
  quality: number;
  created_at: number;
  updated_at: number;
}

/** Where a gallery's rows live. Every write is one transaction. */
export interface GalleryStorage {
  readonly location: string;
  readonly readonly: boolean;
  meta(): Promise<GalleryMeta>;
  /** all (name, template) rows in insertion order */
  templates(): Promise<{ name: string; template: Uint8Array }[]>;
  template(name: string): Promise<Uint8Array | null>;
  /** insert or replace (replace=false: refuse names already enrolled) */
  put(rows: IdentityRow[], replace: boolean): Promise<void>;
  remove(name: string): Promise<boolean>;
  names(): Promise<string[]>;
  /** a token that changes whenever any writer commits (SQLite's data_version) */
  version(): Promise<string>;
  close(): Promise<void>;
}

export class ModelMismatchError extends EdgefaceError {
  constructor(message: string) {
    super("model_mismatch", message);
  }
}

export class Gallery {
  readonly codec: Codec;
  readonly embeddingSize: number;
  readonly modelName: string;
  readonly modelFingerprint: string;
  private cacheKey: string | null = null;
  private rows: { name: string; template: Uint8Array }[] = [];
  private matrix: Float32Array = new Float32Array(0);

  private constructor(readonly storage: GalleryStorage, meta: GalleryMeta) {
    this.embeddingSize = Number(meta.embedding_size);
    this.codec = getCodec(meta.codec, this.embeddingSize);
    this.modelName = meta.model_name;
    this.modelFingerprint = meta.model_fingerprint;
  }

  /** Open a gallery over its storage; with `card`, check it was built by the same model. */
  static async open(storage: GalleryStorage, card?: ModelCard): Promise<Gallery> {
    let meta: GalleryMeta;
    try {
      meta = await storage.meta();
    } catch (exc) {
      await storage.close().catch(() => undefined);
      throw exc;
    }
    for (const key of ["codec", "embedding_size", "model_name", "model_fingerprint"]) {
      if (!(key in meta)) throw new EdgefaceError("gallery", `${storage.location}: gallery metadata has no ${key}`);
    }
    let g: Gallery;
    try {
      g = new Gallery(storage, meta);
    } catch (exc) {
      throw new EdgefaceError("gallery", `${storage.location}: not a usable gallery (${(exc as Error).message})`);
    }
    if (card) g.checkModel(card);
    return g;
  }

  get location(): string {
    return this.storage.location;
  }

  checkModel(card: ModelCard): void {
    const fp = modelFingerprint(card);
    if (card.embedding_size !== this.embeddingSize || fp !== this.modelFingerprint) {
      throw new ModelMismatchError(
        `${this.location}: gallery was built with model ${JSON.stringify(this.modelName)} (${this.embeddingSize}-d, fingerprint ${this.modelFingerprint}); ` +
          `the embedder in use is ${JSON.stringify(card.name)} (${card.embedding_size}-d, fingerprint ${fp}). Templates of different models cannot be compared: re-enrol into a new gallery.`,
      );
    }
  }

  private checkTemplate(template: ArrayLike<number>): Float32Array {
    const t = Float32Array.from(template);
    if (t.length !== this.embeddingSize) throw new EdgefaceError("argument", `template has ${t.length} values, the gallery stores ${this.embeddingSize}-d templates`);
    if (!t.every(Number.isFinite)) throw new EdgefaceError("argument", "template contains NaN or infinite values");
    let s = 0;
    for (const v of t) s += v * v;
    const n = Math.fround(Math.sqrt(s));
    if (n < 1e-6) throw new EdgefaceError("argument", "template is all zeros");
    return t.map((v) => v / n);
  }

  async add(name: string, template: ArrayLike<number>, nImages = 1, quality = 1.0, replace = true): Promise<void> {
    await this.addMany([{ name, template, nImages, quality }], replace);
  }

  async addMany(items: { name: string; template: ArrayLike<number>; nImages?: number; quality?: number }[], replace = true): Promise<number> {
    if (this.storage.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    const now = Date.now() / 1000;
    const rows: IdentityRow[] = items.map(({ name, template, nImages = 1, quality = 1 }) => {
      if (typeof name !== "string" || !name.trim()) throw new EdgefaceError("argument", `identity name must be a non-empty string, got ${JSON.stringify(name)}`);
      return { name, template: this.codec.encode(this.checkTemplate(template)), n_images: Math.trunc(nImages), quality, created_at: now, updated_at: now };
    });
    await this.storage.put(rows, replace);
    return rows.length;
  }

  async remove(name: string): Promise<boolean> {
    if (this.storage.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    return this.storage.remove(name);
  }

  names(): Promise<string[]> {
    return this.storage.names();
  }

  async size(): Promise<number> {
    return (await this.storage.names()).length;
  }

  /** the stored code of `name` (bytes_per_template bytes), or null */
  async templateCode(name: string): Promise<Uint8Array | null> {
    const t = await this.storage.template(name);
    return t === null ? null : this.codec.checkCode(t, `stored template of ${name}`);
  }

  private async refresh(): Promise<void> {
    const key = await this.storage.version();
    if (key === this.cacheKey) return;
    const rows = await this.storage.templates();
    rows.forEach((r, i) => this.codec.checkCode(r.template, `stored template (row ${i})`));
    this.rows = rows;
    const d = this.embeddingSize;
    this.matrix = new Float32Array(rows.length * d);
    if (!this.codec.hammingScores) rows.forEach((r, i) => this.matrix.set(this.codec.decode(r.template), i * d));
    this.cacheKey = key;
  }

  /** The best `topK` identities for one query, highest score first (exact scan). */
  async search(query: ArrayLike<number>, topK = 5): Promise<Match[]> {
    const d = this.embeddingSize;
    if (query.length !== d) throw new EdgefaceError("argument", `query must be (${d},), got ${query.length} values`);
    const q = Float32Array.from(query);
    if (!q.every(Number.isFinite)) throw new EdgefaceError("argument", "query contains NaN or infinite values");
    let s = 0;
    for (const v of q) s += v * v;
    const norm = Math.max(Math.fround(Math.sqrt(s)), 1e-10);
    for (let i = 0; i < d; i++) q[i] = q[i] / norm;
    await this.refresh();
    const n = this.rows.length;
    if (n === 0 || topK <= 0) return [];
    const scores = new Float32Array(n);
    if (this.codec.hammingScores) {
      const qc = this.codec.encode(q);
      const bin = this.codec as unknown as { codeSimilarity(a: Uint8Array, b: Uint8Array): number };
      for (let i = 0; i < n; i++) scores[i] = bin.codeSimilarity(qc, this.rows[i].template);
    } else {
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let j = 0; j < d; j++) acc += q[j] * this.matrix[i * d + j];
        scores[i] = acc;
      }
    }
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
    return order.slice(0, Math.min(topK, n)).map((i) => ({ name: this.rows[i].name, score: scores[i] }));
  }

  /** The score of a query against `name`'s stored template, in the codec's own measure. */
  async score(query: ArrayLike<number>, name: string): Promise<number | null> {
    const code = await this.templateCode(name);
    return code === null ? null : this.codec.similarity(query, code);
  }

  close(): Promise<void> {
    return this.storage.close();
  }
}

/** The metadata rows of a new gallery (what gallery.py writes at creation). */
export function newGalleryMeta(card: ModelCard, codec: string, kitVersion: string, cardJson: string): GalleryMeta {
  getCodec(codec, card.embedding_size); // validate the codec name before touching storage
  return {
    kit_version: kitVersion,
    codec,
    embedding_size: String(card.embedding_size),
    model_name: card.name,
    model_fingerprint: modelFingerprint(card),
    model_card: cardJson,
    created_at: String(Date.now() / 1000),
  };
}
