// The SQLite gallery of edgeface.runtime.gallery: same schema, application id, meta keys, codecs and
// model fingerprint, so a gallery written by either runtime is read by the other.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "internal.hpp"

namespace ef {

static const int SCHEMA_VERSION = 1;
static const int APPLICATION_ID = 0x45444746;  // "EDGF"
static const char* SCHEMA_V1[] = {
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE identities (name TEXT PRIMARY KEY, template BLOB NOT NULL, n_images INTEGER NOT NULL, quality REAL NOT NULL, "
    "created_at REAL NOT NULL, updated_at REAL NOT NULL)"};

struct GalleryImpl {
    sqlite3* db = nullptr;
    std::vector<std::string> last_names;  // backs the ef_match names of the last search
    ~GalleryImpl() {
        if (db) sqlite3_close(db);
    }
};

namespace {
struct Stmt {
    sqlite3_stmt* s = nullptr;
    Stmt(sqlite3* db, const std::string& sql, const std::string& path) {
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
            fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + sqlite3_errmsg(db) + ")");
    }
    ~Stmt() { sqlite3_finalize(s); }
};
}  // namespace

static void exec(sqlite3* db, const std::string& sql, const std::string& path) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + msg + ")");
    }
}

static long long pragma_int(sqlite3* db, const std::string& name, const std::string& path) {
    Stmt st(db, "PRAGMA " + name, path);
    int rc = sqlite3_step(st.s);
    if (rc != SQLITE_ROW) fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + sqlite3_errmsg(db) + ")");
    return sqlite3_column_int64(st.s, 0);
}

static double now_seconds() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

Gallery::Gallery(const std::string& p, const Card* card, const std::string& codec, bool readonly) : impl(new GalleryImpl), path(p) {
    struct stat st;
    bool exists = stat(path.c_str(), &st) == 0 && st.st_size > 0;
    if (!exists) {
        if (readonly) fail(EF_ERR_GALLERY, path + ": no such gallery");
        if (card == nullptr) fail(EF_ERR_GALLERY, path + ": creating a gallery needs the model card of the embedder that fills it");
        get_codec(codec, card->dim);  // validate the codec before touching the disk
        int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0600);
        if (fd < 0) fail(EF_ERR_GALLERY, path + ": cannot create the gallery file (" + strerror(errno) + ")");
        close(fd);
        chmod(path.c_str(), 0600);
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path.c_str(), &impl->db, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
        fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + (impl->db ? sqlite3_errmsg(impl->db) : "cannot open") + ")");
    sqlite3* db = impl->db;
    sqlite3_busy_timeout(db, 30000);
    if (!readonly) {
        Stmt wal(db, "PRAGMA journal_mode = WAL", path);
        if (sqlite3_step(wal.s) != SQLITE_ROW) fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + sqlite3_errmsg(db) + ")");
        std::string mode = (const char*)sqlite3_column_text(wal.s, 0);
        std::transform(mode.begin(), mode.end(), mode.begin(), ::tolower);
        if (mode != "wal") fail(EF_ERR_GALLERY, path + ": could not switch to WAL journal mode (got " + mode + ")");
        exec(db, "PRAGMA synchronous = FULL", path);
    }
    long long version = pragma_int(db, "user_version", path);
    long long app = pragma_int(db, "application_id", path);
    long long tables = 0;
    {
        Stmt t(db, "SELECT COUNT(*) FROM sqlite_master WHERE type='table'", path);
        if (sqlite3_step(t.s) == SQLITE_ROW) tables = sqlite3_column_int64(t.s, 0);
    }
    if (version == 0 && tables == 0) {
        if (readonly) fail(EF_ERR_GALLERY, path + ": empty file, not a gallery");
        if (card == nullptr) fail(EF_ERR_GALLERY, path + ": empty gallery file; creating it needs the model card");
        exec(db, "BEGIN IMMEDIATE", path);
        try {
            for (auto sql : SCHEMA_V1) exec(db, sql, path);
            std::vector<std::pair<std::string, std::string>> meta = {
                {"kit_version", EF_KIT_VERSION},      {"codec", codec},
                {"embedding_size", std::to_string(card->dim)}, {"model_name", card->name},
                {"model_fingerprint", card->fingerprint()},    {"model_card", card->to_json()},
                {"created_at", py_float(now_seconds())}};
            for (auto& [k, v] : meta) {
                Stmt ins(db, "INSERT INTO meta VALUES (?, ?)", path);
                sqlite3_bind_text(ins.s, 1, k.c_str(), -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(ins.s, 2, v.c_str(), -1, SQLITE_TRANSIENT);
                if (sqlite3_step(ins.s) != SQLITE_DONE) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(db));
            }
            exec(db, "PRAGMA application_id = " + std::to_string(APPLICATION_ID), path);
            exec(db, "PRAGMA user_version = " + std::to_string(SCHEMA_VERSION), path);
            exec(db, "COMMIT", path);
        } catch (...) {
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "%#llx", app);
        if (app != APPLICATION_ID) fail(EF_ERR_GALLERY, path + ": an SQLite file but not an edgeface gallery (application_id " + std::string(app ? buf : "0x0") + ")");
        if (version > SCHEMA_VERSION)
            fail(EF_ERR_GALLERY, path + ": gallery schema version " + std::to_string(version) + " is newer than this edgeface (" EF_KIT_VERSION ") supports (1); upgrade edgeface");
        if (version < 1) fail(EF_ERR_GALLERY, path + ": gallery has no schema version; refusing to guess its layout");
    }
    std::map<std::string, std::string> meta;
    {
        Stmt q(db, "SELECT key, value FROM meta", path);
        int rc;
        while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
            const unsigned char* k = sqlite3_column_text(q.s, 0);
            const unsigned char* v = sqlite3_column_text(q.s, 1);
            if (k && v) meta[(const char*)k] = (const char*)v;
        }
        if (rc != SQLITE_DONE) fail(EF_ERR_GALLERY, path + ": not a usable gallery (" + sqlite3_errmsg(db) + ")");
    }
    for (const char* k : {"embedding_size", "codec", "model_name", "model_fingerprint"})
        if (!meta.count(k)) fail(EF_ERR_GALLERY, path + ": gallery meta has no '" + k + "'");
    try {
        dim = std::stoi(meta["embedding_size"]);
    } catch (...) {
        fail(EF_ERR_GALLERY, path + ": gallery meta embedding_size is not a number");
    }
    codec_name = meta["codec"];
    if (!is_codec(codec_name)) fail(EF_ERR_GALLERY, path + ": unknown template codec '" + codec_name + "' in the gallery");
    get_codec(codec_name, dim);
    model_name = meta["model_name"];
    fingerprint = meta["model_fingerprint"];
    if (card != nullptr) {
        std::string fp = card->fingerprint();
        if (card->dim != dim || fp != fingerprint)
            fail(EF_ERR_MODEL_MISMATCH, path + ": gallery was built with model '" + model_name + "' (" + std::to_string(dim) + "-d, fingerprint " +
                                            fingerprint + "); the embedder in use is '" + card->name + "' (" + std::to_string(card->dim) +
                                            "-d, fingerprint " + fp + "). Templates of different models cannot be compared: re-enrol into a new gallery.");
    }
}

Gallery::~Gallery() = default;

size_t Gallery::count() {
    Stmt q(impl->db, "SELECT COUNT(*) FROM identities", path);
    if (sqlite3_step(q.s) != SQLITE_ROW) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(impl->db));
    return (size_t)sqlite3_column_int64(q.s, 0);
}

void Gallery::add(const std::string& name, const float* templ, int n_images, double quality) {
    if (name.find_first_not_of(" \t\n\r\f\v") == std::string::npos)
        fail(EF_ERR_ARGUMENT, "identity name must be a non-empty string, got '" + name + "'");
    std::vector<float> t(templ, templ + dim);
    double s = 0;
    for (float v : t) {
        if (!std::isfinite(v)) fail(EF_ERR_ARGUMENT, "template contains NaN or infinite values");
        s += (double)v * v;
    }
    float norm = (float)std::sqrt(s);
    if (norm < 1e-6f) fail(EF_ERR_ARGUMENT, "template is all zeros");
    for (float& v : t) v /= norm;
    auto code = codec().encode(t.data());
    double now = now_seconds();
    sqlite3* db = impl->db;
    exec(db, "BEGIN IMMEDIATE", path);
    try {
        Stmt ins(db,
                 "INSERT INTO identities (name, template, n_images, quality, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET template = excluded.template, n_images = excluded.n_images, "
                 "quality = excluded.quality, updated_at = excluded.updated_at",
                 path);
        sqlite3_bind_text(ins.s, 1, name.c_str(), (int)name.size(), SQLITE_TRANSIENT);
        sqlite3_bind_blob(ins.s, 2, code.data(), (int)code.size(), SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins.s, 3, n_images);
        sqlite3_bind_double(ins.s, 4, quality);
        sqlite3_bind_double(ins.s, 5, now);
        sqlite3_bind_double(ins.s, 6, now);
        if (sqlite3_step(ins.s) != SQLITE_DONE) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(db));
        exec(db, "COMMIT", path);
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

bool Gallery::remove(const std::string& name) {
    sqlite3* db = impl->db;
    exec(db, "BEGIN IMMEDIATE", path);
    try {
        Stmt del(db, "DELETE FROM identities WHERE name = ?", path);
        sqlite3_bind_text(del.s, 1, name.c_str(), (int)name.size(), SQLITE_TRANSIENT);
        if (sqlite3_step(del.s) != SQLITE_DONE) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(db));
        int n = sqlite3_changes(db);
        exec(db, "COMMIT", path);
        return n > 0;
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

bool Gallery::template_code(const std::string& name, std::vector<uint8_t>& out) {
    Stmt q(impl->db, "SELECT template FROM identities WHERE name = ?", path);
    sqlite3_bind_text(q.s, 1, name.c_str(), (int)name.size(), SQLITE_TRANSIENT);
    int rc = sqlite3_step(q.s);
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(impl->db));
    const uint8_t* b = (const uint8_t*)sqlite3_column_blob(q.s, 0);
    int n = sqlite3_column_bytes(q.s, 0);
    if ((size_t)n != codec().bytes())
        fail(EF_ERR_GALLERY, "codec " + codec_name + ": 1 stored template(s) are not " + std::to_string(codec().bytes()) + " bytes long (first: row 0, " +
                                 std::to_string(n) + " bytes)");
    out.assign(b, b + n);
    return true;
}

std::vector<Match> Gallery::search(const float* query, int top_k) {
    std::vector<float> q(query, query + dim);
    double s = 0;
    for (float v : q) {
        if (!std::isfinite(v)) fail(EF_ERR_ARGUMENT, "query contains NaN or infinite values");
        s += (double)v * v;
    }
    float norm = std::max((float)std::sqrt(s), 1e-10f);
    for (float& v : q) v /= norm;
    std::vector<Match> all;
    if (top_k <= 0) return all;
    const Codec& c = codec();
    Stmt st(impl->db, "SELECT name, template FROM identities ORDER BY rowid", path);
    int rc;
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
        const unsigned char* nm = sqlite3_column_text(st.s, 0);
        const uint8_t* b = (const uint8_t*)sqlite3_column_blob(st.s, 1);
        int n = sqlite3_column_bytes(st.s, 1);
        if ((size_t)n != c.bytes())
            fail(EF_ERR_GALLERY, "codec " + codec_name + ": stored template of '" + std::string(nm ? (const char*)nm : "") + "' is not " +
                                     std::to_string(c.bytes()) + " bytes long (" + std::to_string(n) + " bytes)");
        all.push_back({nm ? (const char*)nm : "", c.similarity(q.data(), b)});
    }
    if (rc != SQLITE_DONE) fail(EF_ERR_GALLERY, path + ": " + sqlite3_errmsg(impl->db));
    size_t k = std::min((size_t)top_k, all.size());
    std::partial_sort(all.begin(), all.begin() + k, all.end(), [](const Match& a, const Match& b) { return a.score > b.score; });
    all.resize(k);
    return all;
}

}  // namespace ef
