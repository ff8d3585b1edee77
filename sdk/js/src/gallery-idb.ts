/**
 * The gallery in the browser: IndexedDB, one database per gallery. The same metadata rows and
 * template bytes as the SQLite gallery (so a gallery can be exported to / imported from the Python
 * format row by row); each write is one readwrite transaction, which IndexedDB commits atomically.
 */
import { cardToJson, type ModelCard } from "./card.js";
import { EdgefaceError } from "./errors.js";
import { Gallery, newGalleryMeta, type GalleryMeta, type GalleryStorage, type IdentityRow } from "./gallery.js";
import { KIT_VERSION } from "./generated/kit.js";

export const IDB_SCHEMA_VERSION = 1;
const META = "meta", IDENTITIES = "identities";

function promised<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
  });
}

class IdbStorage implements GalleryStorage {
  private counter = 0;
  constructor(readonly location: string, private db: IDBDatabase, readonly readonly: boolean) {}
  async meta() {
    const tx = this.db.transaction(META, "readonly");
    const rows = (await promised(tx.objectStore(META).getAll())) as { key: string; value: string }[];
    return Object.fromEntries(rows.map((r) => [r.key, r.value])) as GalleryMeta;
  }
  private async rows(): Promise<IdentityRow[]> {
    const tx = this.db.transaction(IDENTITIES, "readonly");
    const rows = (await promised(tx.objectStore(IDENTITIES).index("seq").getAll())) as (IdentityRow & { seq: number })[];
    return rows;
  }
  async templates() {
    return (await this.rows()).map((r) => ({ name: r.name, template: new Uint8Array(r.template) }));
  }
  async template(name: string) {
    const tx = this.db.transaction(IDENTITIES, "readonly");
    const r = (await promised(tx.objectStore(IDENTITIES).get(name))) as IdentityRow | undefined;
    return r ? new Uint8Array(r.template) : null;
  }
  async put(rows: IdentityRow[], replace: boolean) {
    if (this.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    const tx = this.db.transaction([IDENTITIES, META], "readwrite");
    const store = tx.objectStore(IDENTITIES);
    const finished = done(tx);
    const seqRow = (await promised(tx.objectStore(META).get("_seq"))) as { value: string } | undefined;
    let seq = Number(seqRow?.value ?? 0);
    for (const r of rows) {
      const old = (await promised(store.get(r.name))) as (IdentityRow & { seq: number }) | undefined;
      if (old && !replace) {
        tx.abort();
        await finished.catch(() => undefined);
        throw new EdgefaceError("gallery", `${this.location}: already enrolled: ${r.name} (use replace=true to overwrite)`);
      }
      store.put({ ...r, template: r.template.slice(), created_at: old?.created_at ?? r.created_at, seq: old?.seq ?? ++seq });
    }
    tx.objectStore(META).put({ key: "_seq", value: String(seq) });
    await finished;
    this.counter++;
  }
  async remove(name: string) {
    if (this.readonly) throw new EdgefaceError("gallery", `${this.location}: opened read-only`);
    const tx = this.db.transaction(IDENTITIES, "readwrite");
    const store = tx.objectStore(IDENTITIES);
    const had = (await promised(store.count(name))) > 0;
    store.delete(name);
    await done(tx);
    this.counter++;
    return had;
  }
  async names() {
    return (await this.rows()).map((r) => r.name).sort();
  }
  async version() {
    // IndexedDB has no data_version: the row count + this connection's writes + the sequence
    const tx = this.db.transaction([IDENTITIES, META], "readonly");
    const n = await promised(tx.objectStore(IDENTITIES).count());
    const seq = (await promised(tx.objectStore(META).get("_seq"))) as { value: string } | undefined;
    return `${n}/${seq?.value ?? 0}/${this.counter}`;
  }
  async close() {
    this.db.close();
  }
}

export interface IdbGalleryOptions {
  card?: ModelCard;
  codec?: string;
  readonly?: boolean;
  create?: boolean;
  /** the IndexedDB factory (default: globalThis.indexedDB) */
  indexedDB?: IDBFactory;
}

/** Open (or create) the gallery stored in IndexedDB database `name`. */
export async function openIdbGallery(name: string, options: IdbGalleryOptions = {}): Promise<Gallery> {
  const { card, codec = "float32", readonly = false, create = true } = options;
  const idb = options.indexedDB ?? globalThis.indexedDB;
  if (!idb) throw new EdgefaceError("gallery", `${name}: IndexedDB is not available here`);
  const location = `indexeddb:${name}`;
  let created = false;
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const req = idb.open(name, IDB_SCHEMA_VERSION);
    req.onupgradeneeded = (ev) => {
      if (ev.oldVersion !== 0) return; // no migrations yet
      if (readonly || !create || !card) {
        req.transaction?.abort();
        return;
      }
      const d = req.result;
      d.createObjectStore(META, { keyPath: "key" });
      d.createObjectStore(IDENTITIES, { keyPath: "name" }).createIndex("seq", "seq", { unique: true });
      created = true;
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  }).catch((exc: Error) => {
    if (exc?.name === "VersionError") throw new EdgefaceError("gallery", `${location}: gallery schema is newer than this SDK supports (${IDB_SCHEMA_VERSION})`);
    if (readonly || !create) throw new EdgefaceError("gallery", `${location}: no such gallery`);
    if (!card) throw new EdgefaceError("gallery", `${location}: creating a gallery needs the model card of the embedder that fills it`);
    throw new EdgefaceError("gallery", `${location}: not a usable gallery (${exc?.message})`);
  });
  if (!db.objectStoreNames.contains(META) || !db.objectStoreNames.contains(IDENTITIES)) {
    db.close();
    throw new EdgefaceError("gallery", `${location}: an IndexedDB database but not an edgeface gallery`);
  }
  if (created && card) {
    const meta = newGalleryMeta(card, codec, KIT_VERSION, cardToJson(card));
    const tx = db.transaction(META, "readwrite");
    for (const [key, value] of Object.entries(meta)) tx.objectStore(META).put({ key, value });
    await done(tx);
  }
  return Gallery.open(new IdbStorage(location, db, readonly), card);
}

/** Delete a gallery database. */
export function deleteIdbGallery(name: string, idb: IDBFactory = globalThis.indexedDB): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = idb.deleteDatabase(name);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
  });
}
