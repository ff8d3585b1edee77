/**
 * The gallery in an SQLite file for Node (better-sqlite3): the SAME file format as the Python
 * gallery (edgeface/runtime/gallery.py, schema version 1), so a gallery written by one is read and
 * extended by the other. Same guarantees: application_id "EDGF" and user_version checked, WAL,
 * synchronous FULL, one BEGIN IMMEDIATE transaction per write, owner-only file.
 */
import { closeSync, existsSync, mkdirSync, openSync, chmodSync, statSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { cardToJson, type ModelCard } from "./card.js";
import { EdgefaceError } from "./errors.js";
import { Gallery, newGalleryMeta, type GalleryMeta, type GalleryStorage, type IdentityRow } from "./gallery.js";
import { KIT_VERSION } from "./generated/kit.js";

export const SCHEMA_VERSION = 1;
export const APPLICATION_ID = 0x45444746; // "EDGF"
const SCHEMA_V1 = [
  "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  `CREATE TABLE identities (
    name TEXT PRIMARY KEY,
    template BLOB NOT NULL,
    n_images INTEGER NOT NULL,
    quality REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)`,
];

export interface SqliteGalleryOptions {
  /** the embedder's card: needed to create a gallery; checked against an existing one */
  card?: ModelCard;
  codec?: string;
  readonly?: boolean;
  create?: boolean;
  /** seconds to wait for another writer */
  timeout?: number;
}

class SqliteStorage implements GalleryStorage {
  private localWrites = 0;
  constructor(readonly location: string, private db: Database.Database, readonly readonly: boolean) {}

  private fail<T>(fn: () => T): T {
    try {
      return fn();
    } catch (exc) {
      if (exc instanceof EdgefaceError) throw exc;
      throw new EdgefaceError("gallery", `${this.location}: not a usable gallery (${(exc as Error).message})`);
    }
  }
  async meta() {
    return this.fail(() => Object.fromEntries((this.db.prepare("SELECT key, value FROM meta").all() as { key: string; value: string }[]).map((r) => [r.key, r.value])) as GalleryMeta);
  }
  async templates() {
    return this.fail(() => (this.db.prepare("SELECT name, template FROM identities ORDER BY rowid").all() as { name: string; template: Buffer }[])
      .map((r) => ({ name: r.name, template: new Uint8Array(r.template) })));
  }
  async template(name: string) {
    const r = this.fail(() => this.db.prepare("SELECT template FROM identities WHERE name = ?").get(name) as { template: Buffer } | undefined);
    return r ? new Uint8Array(r.template) : null;
  }
  async put(rows: IdentityRow[], replace: boolean) {
    if (this.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    const exists = this.db.prepare("SELECT 1 FROM identities WHERE name = ?");
    const upsert = this.db.prepare(
      "INSERT INTO identities (name, template, n_images, quality, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT(name) DO UPDATE SET template = excluded.template, n_images = excluded.n_images, " +
        "quality = excluded.quality, updated_at = excluded.updated_at",
    );
    this.db.transaction(() => {
      if (!replace) {
        const clash = rows.filter((r) => exists.get(r.name)).map((r) => r.name);
        if (clash.length) throw new EdgefaceError("gallery", `${this.location}: already enrolled: ${clash.slice(0, 5).join(", ")} (use replace=true to overwrite)`);
      }
      for (const r of rows) upsert.run(r.name, Buffer.from(r.template), r.n_images, r.quality, r.created_at, r.updated_at);
    }).immediate();
    this.localWrites++;
  }
  async remove(name: string) {
    if (this.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    const n = this.db.transaction(() => this.db.prepare("DELETE FROM identities WHERE name = ?").run(name).changes).immediate();
    this.localWrites++;
    return n > 0;
  }
  async names() {
    return this.fail(() => (this.db.prepare("SELECT name FROM identities ORDER BY name").all() as { name: string }[]).map((r) => r.name));
  }
  async version() {
    return `${this.db.pragma("data_version", { simple: true })}/${this.localWrites}`;
  }
  async close() {
    if (this.db.open) this.db.close();
  }
}

function checkOrCreate(db: Database.Database, path: string, readonly: boolean, card: ModelCard | undefined, codec: string): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  const appId = db.pragma("application_id", { simple: true }) as number;
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type='table'").all() as { name: string }[]).length;
  if (version === 0 && tables === 0) {
    if (readonly) throw new EdgefaceError("gallery", `${path}: empty file, not a gallery`);
    if (!card) throw new EdgefaceError("gallery", `${path}: empty gallery file; creating it needs the model card`);
    const meta = newGalleryMeta(card, codec, KIT_VERSION, cardToJson(card));
    db.transaction(() => {
      for (const stmt of SCHEMA_V1) db.prepare(stmt).run();
      const ins = db.prepare("INSERT INTO meta VALUES (?, ?)");
      for (const [k, v] of Object.entries(meta)) ins.run(k, v);
      db.pragma(`application_id = ${APPLICATION_ID}`);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
    return;
  }
  if (appId !== APPLICATION_ID) throw new EdgefaceError("gallery", `${path}: an SQLite file but not an edgeface gallery (application_id 0x${appId.toString(16)})`);
  if (version > SCHEMA_VERSION) throw new EdgefaceError("gallery", `${path}: gallery schema version ${version} is newer than this SDK supports (${SCHEMA_VERSION}); upgrade it`);
  if (version < 1) throw new EdgefaceError("gallery", `${path}: gallery has no schema version; refusing to guess its layout`);
}

/** Open (or create) a gallery file, as gallery.Gallery(path, card, codec, readonly, create). */
export async function openSqliteGallery(path: string, options: SqliteGalleryOptions = {}): Promise<Gallery> {
  const { card, codec = "float32", readonly = false, create = true, timeout = 30 } = options;
  const exists = existsSync(path) && statSync(path).size > 0;
  if (!exists) {
    if (readonly || !create) throw new EdgefaceError("gallery", `${path}: no such gallery`);
    if (!card) throw new EdgefaceError("gallery", `${path}: creating a gallery needs the model card of the embedder that fills it`);
    newGalleryMeta(card, codec, KIT_VERSION, ""); // validates the codec before touching the disk
    mkdirSync(dirname(path), { recursive: true });
    if (!existsSync(path)) closeSync(openSync(path, "wx", 0o600));
    chmodSync(path, 0o600);
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly, fileMustExist: true, timeout: timeout * 1000 });
    if (!readonly) {
      const mode = String(db.pragma("journal_mode = WAL", { simple: true }));
      if (mode.toLowerCase() !== "wal") throw new EdgefaceError("gallery", `${path}: could not switch to WAL journal mode (got ${mode})`);
      db.pragma("synchronous = FULL");
    }
    checkOrCreate(db, path, readonly, card, codec);
  } catch (exc) {
    try { db?.close(); } catch { /* already failing */ }
    if (exc instanceof EdgefaceError) throw exc;
    throw new EdgefaceError("gallery", `${path}: not a usable gallery (${(exc as Error).message})`);
  }
  return Gallery.open(new SqliteStorage(path, db, readonly), card);
}
