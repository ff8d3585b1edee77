// The C ABI (include/edgeface.h) over the core: every entry point catches everything, so no C++
// exception crosses the boundary; failures become a status + this thread's last error message.
#include <cmath>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <unordered_set>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

#include "internal.hpp"

struct ef_bundle {
    std::unique_ptr<ef::Bundle> b;
};
struct ef_gallery {
    std::unique_ptr<ef::Gallery> g;
    std::vector<std::string> names;  // backs ef_match / identify names until the next search
};
struct ef_face {
    std::vector<uint8_t> crop;
    int h = 0, w = 0;
    ef::Landmarks lm{};
    std::vector<float> embedding;
    ef::Measures measures;
    bool passed[2] = {false, false};
    std::string failed[2], reasons[2];
    double weight = 1.0;
};

static thread_local std::string last_error, last_bundle_kind;

template <class F>
static ef_status guard(F&& f) {
    try {
        last_error.clear(), last_bundle_kind.clear();
        f();
        return EF_OK;
    } catch (const ef::Error& e) {
        last_error = e.message;
        last_bundle_kind = e.bundle_kind;
        return e.status;
    } catch (const std::bad_alloc&) {
        last_error = "out of memory";
        return EF_ERR_RUNTIME;
    } catch (const std::exception& e) {
        last_error = std::string("internal error: ") + e.what();
        return EF_ERR_RUNTIME;
    } catch (...) {
        last_error = "internal error";
        return EF_ERR_RUNTIME;
    }
}

static void need(const void* p, const char* what) {
    if (p == nullptr) ef::fail(EF_ERR_ARGUMENT, std::string(what) + " is NULL");
}

// Validated handles: every bundle, face and gallery handed out is registered until it is closed, so a
// second close, or a call with a closed (or never opened) handle, is refused with EF_ERR_ARGUMENT
// instead of reading freed memory. A closed handle's contents are released at once; its small shell
// is kept for the next RETIRED closes of that type, so its address is not soon a new live handle
// (a stale handle would otherwise name someone else's face or gallery).
template <class T>
class Handles {
public:
    T* add(std::unique_ptr<T> h) {
        std::lock_guard<std::mutex> lock(mu_);
        live_.insert(h.get());
        return h.release();
    }
    bool alive(const T* h) {
        std::lock_guard<std::mutex> lock(mu_);
        return live_.count(h) != 0;
    }
    // false: not a live handle (already closed, or never ours)
    bool retire(T* h) {
        T* drop = nullptr;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (live_.erase(h) == 0) return false;
            retired_.push_back(h);
            if (retired_.size() > RETIRED) drop = retired_.front(), retired_.pop_front();
        }
        *h = T{};  // release the contents now (model session, SQLite connection, crop and embedding)
        delete drop;
        return true;
    }

private:
    static constexpr size_t RETIRED = 1024;
    std::mutex mu_;
    std::unordered_set<const T*> live_;
    std::deque<T*> retired_;
};
// never destroyed: handles may be closed from other static destructors' time
static Handles<ef_bundle>& bundles = *new Handles<ef_bundle>();
static Handles<ef_face>& faces_ = *new Handles<ef_face>();
static Handles<ef_gallery>& galleries = *new Handles<ef_gallery>();

static void need(const ef_bundle* b, const char* what) {
    need((const void*)b, what);
    if (!bundles.alive(b)) ef::fail(EF_ERR_ARGUMENT, std::string(what) + " is not an open bundle handle (closed, or never opened)");
}
static void need(const ef_face* f, const char* what) {
    need((const void*)f, what);
    if (!faces_.alive(f)) ef::fail(EF_ERR_ARGUMENT, std::string(what) + " is not a live face handle (freed, or never made)");
}
static void need(const ef_gallery* g, const char* what) {
    need((const void*)g, what);
    if (!galleries.alive(g)) ef::fail(EF_ERR_ARGUMENT, std::string(what) + " is not an open gallery handle (closed, or never opened)");
}
template <class T>
static ef_status close_handle(Handles<T>& handles, T* h, const char* what) {
    return guard([&] {
        if (h == nullptr) return;  // like free(NULL)
        if (!handles.retire(h)) ef::fail(EF_ERR_ARGUMENT, std::string(what) + " was already closed (or is not a handle this library made)");
    });
}
static std::string far_of(const char* far) { return far ? far : "1e-3"; }
static bool valid_mode(ef_mode m) { return m == EF_MODE_VERIFY || m == EF_MODE_ENROLL; }

extern "C" {

const char* ef_last_error(void) { return last_error.c_str(); }
const char* ef_last_bundle_kind(void) { return last_bundle_kind.c_str(); }

const char* ef_status_kind(ef_status s) {
    switch (s) {
        case EF_OK: return "ok";
        case EF_ERR_MISSING: return "missing";
        case EF_ERR_UNREADABLE: return "unreadable";
        case EF_ERR_EMPTY: return "empty";
        case EF_ERR_TINY: return "tiny";
        case EF_ERR_HUGE: return "huge";
        case EF_ERR_INVALID: return "invalid";
        case EF_ERR_BAD_LANDMARKS: return "bad_landmarks";
        case EF_ERR_QUALITY: return "quality";
        case EF_ERR_BUNDLE: return "bundle";
        case EF_ERR_GALLERY: return "gallery";
        case EF_ERR_MODEL_MISMATCH: return "model_mismatch";
        case EF_ERR_NOT_ENROLLED: return "not_enrolled";
        case EF_ERR_ARGUMENT: return "argument";
        case EF_ERR_RUNTIME: return "runtime";
        case EF_ERR_NO_CONFORMANCE: return "no_conformance";
    }
    return "unknown";
}

const char* ef_version(void) { return EF_KIT_VERSION; }

ef_status ef_bundle_open(const char* dir, int threads, ef_bundle** out) {
    return guard([&] {
        need(out, "out");
        *out = nullptr;
        need(dir, "bundle directory");
        auto h = std::make_unique<ef_bundle>();
        h->b = ef::open_bundle(dir, threads);
        *out = bundles.add(std::move(h));
    });
}

ef_status ef_bundle_close(ef_bundle* b) { return close_handle(bundles, b, "bundle"); }

int ef_bundle_embedding_size(const ef_bundle* b) { return b && bundles.alive(b) ? b->b->card.dim : 0; }

ef_status ef_bundle_crop_size(const ef_bundle* b, int* h, int* w) {
    return guard([&] {
        need(b, "bundle"), need(h, "height"), need(w, "width");
        *h = b->b->card.height, *w = b->b->card.width;
    });
}

ef_status ef_bundle_fingerprint(const ef_bundle* b, char* out, size_t cap) {
    return guard([&] {
        need(b, "bundle"), need(out, "out");
        std::string fp = b->b->card.fingerprint();
        if (cap < fp.size() + 1) ef::fail(EF_ERR_ARGUMENT, "fingerprint buffer needs 17 bytes");
        std::memcpy(out, fp.c_str(), fp.size() + 1);
    });
}

ef_status ef_bundle_threshold(const ef_bundle* b, const char* codec, const char* far, float* out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out");
        *out = (float)b->b->threshold(codec ? codec : "cosine", far_of(far));
    });
}

ef_status ef_bundle_quality_threshold(const ef_bundle* b, ef_mode mode, const char* key, double* out) {
    return guard([&] {
        need(b, "bundle"), need(key, "key"), need(out, "out");
        if (!valid_mode(mode)) ef::fail(EF_ERR_ARGUMENT, "quality mode must be verify or enroll");
        const auto& t = b->b->gate.of(mode);
        auto it = t.find(key);
        if (it == t.end()) ef::fail(EF_ERR_ARGUMENT, std::string("unknown quality threshold '") + key + "'");
        *out = it->second;
    });
}

static void hand_out(const ef::Image& img, uint8_t** rgb, int* w, int* h) {
    uint8_t* p = (uint8_t*)std::malloc(img.rgb.size());
    if (p == nullptr) throw std::bad_alloc();
    std::memcpy(p, img.rgb.data(), img.rgb.size());
    *rgb = p, *w = img.width, *h = img.height;
}

ef_status ef_decode_image(const uint8_t* bytes, size_t size, uint8_t** rgb, int* width, int* height) {
    return guard([&] {
        need(rgb, "rgb"), need(width, "width"), need(height, "height");
        *rgb = nullptr;
        hand_out(ef::decode_image(bytes, size, "<bytes>"), rgb, width, height);
    });
}

ef_status ef_read_image(const char* path, uint8_t** rgb, int* width, int* height) {
    return guard([&] {
        need(path, "path"), need(rgb, "rgb"), need(width, "width"), need(height, "height");
        *rgb = nullptr;
        hand_out(ef::read_image_file(path), rgb, width, height);
    });
}

void ef_free(void* p) { std::free(p); }

ef_status ef_align(const ef_bundle* b, const uint8_t* rgb, int width, int height, const double* landmarks, size_t n, uint8_t* crop,
                   size_t crop_size) {
    return guard([&] {
        need(b, "bundle"), need(crop, "crop");
        const auto& card = b->b->card;
        if (crop_size != (size_t)card.height * card.width * 3)
            ef::fail(EF_ERR_ARGUMENT, "crop buffer must hold " + std::to_string((size_t)card.height * card.width * 3) + " bytes");
        ef::check_pixels(rgb, width, height, "<array>");
        auto lm = ef::check_landmarks(landmarks, n);
        auto c = ef::align_face(rgb, width, height, lm, card.templ, card.height, card.width);
        std::memcpy(crop, c.data(), c.size());
    });
}

ef_status ef_embed_crops(const ef_bundle* b, const uint8_t* crops, size_t n, float* out, size_t out_len) {
    return guard([&] {
        need(b, "bundle"), need(crops, "crops"), need(out, "out");
        const auto& card = b->b->card;
        if (n == 0 || n > 4096) ef::fail(EF_ERR_ARGUMENT, "embed between 1 and 4096 crops per call");
        if (out_len != n * (size_t)card.dim) ef::fail(EF_ERR_ARGUMENT, "out must hold n * embedding_size floats");
        auto e = b->b->embed(crops, n);
        std::memcpy(out, e.data(), e.size() * sizeof(float));
    });
}

// Embed the crop and its mirror image, measure, run both gate modes (FaceRecognizer.analyze).
static std::unique_ptr<ef_face> finish_face(const ef::Bundle& b, std::vector<uint8_t> crop, const ef::Landmarks& lm, double score) {
    auto f = std::make_unique<ef_face>();
    f->h = b.card.height, f->w = b.card.width, f->lm = lm;
    size_t per = crop.size();
    std::vector<uint8_t> both(2 * per);
    std::memcpy(both.data(), crop.data(), per);
    for (int y = 0; y < f->h; ++y)
        for (int x = 0; x < f->w; ++x)
            std::memcpy(&both[per + ((size_t)y * f->w + x) * 3], &crop[((size_t)y * f->w + (f->w - 1 - x)) * 3], 3);
    auto e = b.embed(both.data(), 2);
    int d = b.card.dim;
    float flip = 0;
    for (int k = 0; k < d; ++k) flip += e[k] * e[d + k];
    for (int k = 0; k < d; ++k)
        if (!std::isfinite(e[k])) ef::fail(EF_ERR_RUNTIME, "the model returned non-finite embedding values");
    f->embedding.assign(e.begin(), e.begin() + d);
    f->crop = std::move(crop);
    f->measures = ef::measure(f->crop.data(), f->h, f->w, lm, score, score >= 0, flip, true);
    if (b.nonface.present()) f->measures["nonface_margin"] = b.nonface.margin(f->embedding.data());
    f->measures["landmark_residual"] = ef::landmark_residual(lm, ef::template_landmarks(b.card.templ, b.card.height, b.card.width));
    for (int m = 0; m < 2; ++m) {
        auto checks = ef::assess(f->measures, b.gate.of((ef_mode)m));
        f->passed[m] = true;
        for (auto& c : checks)
            if (!c.passed) {
                f->passed[m] = false;
                f->failed[m] += (f->failed[m].empty() ? "" : ",") + c.name + ":" + c.kind;
                f->reasons[m] += (f->reasons[m].empty() ? "" : "; ") + c.message;
            }
    }
    f->weight = ef::quality_weight(f->measures);
    return f;
}

static std::unique_ptr<ef_face> analyze_pixels(const ef::Bundle& b, const uint8_t* rgb, int w, int h, const double* landmarks, size_t n,
                                               double score) {
    auto lm = ef::check_landmarks(landmarks, n);
    ef::check_app_landmarks(lm, w, h);
    auto crop = ef::align_face(rgb, w, h, lm, b.card.templ, b.card.height, b.card.width);
    return finish_face(b, std::move(crop), lm, score);
}

ef_status ef_analyze_rgb(const ef_bundle* b, const uint8_t* rgb, int width, int height, const double* landmarks, size_t n, double score,
                         ef_face** out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out");
        *out = nullptr;
        ef::check_pixels(rgb, width, height, "<array>");
        *out = faces_.add(analyze_pixels(*b->b, rgb, width, height, landmarks, n, score));
    });
}

ef_status ef_analyze_encoded(const ef_bundle* b, const uint8_t* bytes, size_t size, const double* landmarks, size_t n, double score,
                             ef_face** out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out");
        *out = nullptr;
        auto img = ef::decode_image(bytes, size, "<bytes>");
        *out = faces_.add(analyze_pixels(*b->b, img.rgb.data(), img.width, img.height, landmarks, n, score));
    });
}

ef_status ef_analyze_file(const ef_bundle* b, const char* path, const double* landmarks, size_t n, double score, ef_face** out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out"), need(path, "path");
        *out = nullptr;
        auto img = ef::read_image_file(path);
        *out = faces_.add(analyze_pixels(*b->b, img.rgb.data(), img.width, img.height, landmarks, n, score));
    });
}

ef_status ef_analyze_crop(const ef_bundle* b, const uint8_t* crop, const double* landmarks, size_t n, ef_face** out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out"), need(crop, "crop");
        *out = nullptr;
        auto lm = ef::check_landmarks(landmarks, n);
        std::vector<uint8_t> c(crop, crop + (size_t)b->b->card.height * b->b->card.width * 3);
        *out = faces_.add(finish_face(*b->b, std::move(c), lm, -1));
    });
}

ef_status ef_face_free(ef_face* f) { return close_handle(faces_, f, "face"); }

static bool live(const ef_face* f) { return f != nullptr && faces_.alive(f); }

const float* ef_face_embedding(const ef_face* f, size_t* dim) {
    bool ok = live(f);
    if (dim) *dim = ok ? f->embedding.size() : 0;
    return ok ? f->embedding.data() : nullptr;
}

const uint8_t* ef_face_crop(const ef_face* f, int* h, int* w) {
    bool ok = live(f);
    if (h) *h = ok ? f->h : 0;
    if (w) *w = ok ? f->w : 0;
    return ok ? f->crop.data() : nullptr;
}

ef_status ef_face_measure(const ef_face* f, const char* name, double* out) {
    return guard([&] {
        need(f, "face"), need(name, "name"), need(out, "out");
        auto it = f->measures.find(name);
        if (it == f->measures.end()) ef::fail(EF_ERR_ARGUMENT, std::string("measure '") + name + "' was not taken for this face");
        *out = it->second;
    });
}

int ef_face_passed(const ef_face* f, ef_mode m) { return live(f) && valid_mode(m) ? (int)f->passed[m] : 0; }
const char* ef_face_failed(const ef_face* f, ef_mode m) { return live(f) && valid_mode(m) ? f->failed[m].c_str() : ""; }
const char* ef_face_reasons(const ef_face* f, ef_mode m) { return live(f) && valid_mode(m) ? f->reasons[m].c_str() : ""; }
double ef_face_weight(const ef_face* f) { return live(f) ? f->weight : 0.0; }

static void need_gate(const ef_face* f, ef_mode m) {
    need(f, "face");
    if (!f->passed[m]) ef::fail(EF_ERR_QUALITY, f->reasons[m]);
}

static void same_dim(const ef_bundle* b, const ef_face* f) {
    if (f->embedding.size() != (size_t)b->b->card.dim) ef::fail(EF_ERR_ARGUMENT, "face was analysed by a bundle of another embedding size");
}

ef_status ef_compare(const ef_bundle* b, const ef_face* a, const ef_face* c, const char* far, int* match, float* sim) {
    return guard([&] {
        need(b, "bundle"), need(match, "match"), need(sim, "similarity");
        double thr = b->b->threshold("cosine", far_of(far));
        need_gate(a, EF_MODE_VERIFY), need_gate(c, EF_MODE_VERIFY);
        same_dim(b, a), same_dim(b, c);
        float s = 0;
        for (size_t k = 0; k < a->embedding.size(); ++k) s += a->embedding[k] * c->embedding[k];
        *sim = s, *match = s >= thr;
    });
}

ef_status ef_codec_size(const char* codec, int dim, size_t* bytes) {
    return guard([&] {
        need(codec, "codec"), need(bytes, "bytes");
        *bytes = ef::get_codec(codec, dim).bytes();
    });
}

ef_status ef_codec_encode(const char* codec, const float* emb, int dim, uint8_t* out, size_t cap) {
    return guard([&] {
        need(codec, "codec"), need(emb, "embedding"), need(out, "out");
        const auto& c = ef::get_codec(codec, dim);
        if (cap < c.bytes()) ef::fail(EF_ERR_ARGUMENT, "code buffer too small");
        auto code = c.encode(emb);
        std::memcpy(out, code.data(), code.size());
    });
}

ef_status ef_codec_similarity(const char* codec, const float* q, int dim, const uint8_t* code, size_t size, float* out) {
    return guard([&] {
        need(codec, "codec"), need(q, "query"), need(code, "code"), need(out, "out");
        const auto& c = ef::get_codec(codec, dim);
        if (size != c.bytes()) ef::fail(EF_ERR_ARGUMENT, "code must be " + std::to_string(c.bytes()) + " bytes");
        *out = c.similarity(q, code);
    });
}

ef_status ef_gallery_open(const char* path, const ef_bundle* b, const char* codec, int readonly, ef_gallery** out) {
    return guard([&] {
        need(out, "out");
        *out = nullptr;
        need(path, "path");
        if (b != nullptr) need(b, "bundle");
        auto h = std::make_unique<ef_gallery>();
        h->g = std::make_unique<ef::Gallery>(path, b ? &b->b->card : nullptr, codec ? codec : "float32", readonly != 0);
        *out = galleries.add(std::move(h));
    });
}

ef_status ef_gallery_close(ef_gallery* g) { return close_handle(galleries, g, "gallery"); }

ef_status ef_gallery_count(ef_gallery* g, size_t* n) {
    return guard([&] {
        need(g, "gallery"), need(n, "count");
        *n = g->g->count();
    });
}

const char* ef_gallery_codec(const ef_gallery* g) { return g && galleries.alive(g) ? g->g->codec_name.c_str() : ""; }

ef_status ef_gallery_add(ef_gallery* g, const char* name, const float* t, int dim, int n_images, double quality) {
    return guard([&] {
        need(g, "gallery"), need(name, "name"), need(t, "template");
        if (dim != g->g->dim) ef::fail(EF_ERR_ARGUMENT, "template has " + std::to_string(dim) + " values, the gallery stores " + std::to_string(g->g->dim) + "-d templates");
        g->g->add(name, t, n_images, quality);
    });
}

ef_status ef_gallery_remove(ef_gallery* g, const char* name, int* removed) {
    return guard([&] {
        need(g, "gallery"), need(name, "name");
        bool r = g->g->remove(name);
        if (removed) *removed = r;
    });
}

ef_status ef_gallery_template_code(ef_gallery* g, const char* name, uint8_t* out, size_t* size) {
    return guard([&] {
        need(g, "gallery"), need(name, "name"), need(size, "size");
        std::vector<uint8_t> code;
        if (!g->g->template_code(name, code)) ef::fail(EF_ERR_NOT_ENROLLED, std::string("'") + name + "' is not enrolled in " + g->g->path);
        if (out == nullptr || *size < code.size()) {
            *size = code.size();
            ef::fail(EF_ERR_ARGUMENT, "template buffer needs " + std::to_string(code.size()) + " bytes");
        }
        std::memcpy(out, code.data(), code.size());
        *size = code.size();
    });
}

static void fill_matches(ef_gallery* g, const std::vector<ef::Match>& ms, ef_match* out, size_t* n_out) {
    g->names.clear();
    for (auto& m : ms) g->names.push_back(m.name);
    size_t cap = *n_out;
    *n_out = ms.size();
    if (out != nullptr)
        for (size_t i = 0; i < ms.size() && i < cap; ++i) out[i] = {g->names[i].c_str(), ms[i].score};
}

ef_status ef_gallery_search(ef_gallery* g, const float* q, int dim, int top_k, ef_match* out, size_t* n_out) {
    return guard([&] {
        need(g, "gallery"), need(q, "query"), need(n_out, "n_out");
        if (dim != g->g->dim) ef::fail(EF_ERR_ARGUMENT, "query must be (" + std::to_string(g->g->dim) + ",), got (" + std::to_string(dim) + ",)");
        if (out != nullptr && (size_t)std::max(top_k, 0) > *n_out) ef::fail(EF_ERR_ARGUMENT, "candidate buffer smaller than top_k");
        fill_matches(g, g->g->search(q, top_k), out, n_out);
    });
}

static void check_model(ef_gallery* g, const ef_bundle* b) {
    need(g, "gallery"), need(b, "bundle");
    if (b->b->card.fingerprint() != g->g->fingerprint || b->b->card.dim != g->g->dim)
        ef::fail(EF_ERR_MODEL_MISMATCH, g->g->path + ": gallery was built with model '" + g->g->model_name + "', not with this bundle's '" + b->b->card.name + "'");
}

static double gallery_threshold(ef_gallery* g, const ef_bundle* b, const char* far) {
    const std::string& codec = g->g->codec_name;
    return b->b->threshold(g->g->codec().hamming ? codec : "cosine", far_of(far));
}

ef_status ef_gallery_contains(ef_gallery* g, const char* name, int* yes) {
    return guard([&] {
        need(g, "gallery"), need(name, "name"), need(yes, "yes");
        std::vector<uint8_t> code;
        *yes = g->g->template_code(name, code);
    });
}

ef_status ef_gallery_threshold(ef_gallery* g, const ef_bundle* b, const char* far, float* out) {
    return guard([&] {
        check_model(g, b);
        need(out, "out");
        *out = (float)gallery_threshold(g, b, far);
    });
}

ef_status ef_enroll(ef_gallery* g, const ef_bundle* b, const char* name, const ef_face* const* faces, size_t n, int* used, double* tq) {
    return guard([&] {
        check_model(g, b);
        need(name, "name");
        if (std::string(name).find_first_not_of(" \t\n\r\f\v") == std::string::npos)
            ef::fail(EF_ERR_ARGUMENT, "identity name must be a non-empty string");
        if (n == 0 || faces == nullptr) ef::fail(EF_ERR_ARGUMENT, std::string("enroll '") + name + "': no images given");
        int d = b->b->card.dim;
        std::vector<double> t(d, 0.0);
        double wsum = 0;
        int count = 0;
        std::string reasons;
        for (size_t i = 0; i < n; ++i) {
            const ef_face* f = faces[i];
            need(f, "face");
            same_dim(b, f);
            bool ok = f->passed[EF_MODE_ENROLL];
            if (used) used[i] = ok;
            if (!ok) {
                reasons += (reasons.empty() ? "" : " | ") + f->reasons[EF_MODE_ENROLL];
                continue;
            }
            for (int k = 0; k < d; ++k) t[k] += f->weight * (double)f->embedding[k];
            wsum += f->weight, ++count;
        }
        if (count == 0) ef::fail(EF_ERR_QUALITY, std::string("enroll '") + name + "': no image passed the enrolment gate: " + reasons);
        double norm = 0;
        for (double v : t) norm += v * v;
        norm = std::max(std::sqrt(norm), 1e-10);
        std::vector<float> tf(d);
        for (int k = 0; k < d; ++k) tf[k] = (float)(t[k] / norm);
        g->g->add(name, tf.data(), count, wsum / count);
        if (tq) *tq = wsum / count;
    });
}

ef_status ef_verify(ef_gallery* g, const ef_bundle* b, const ef_face* f, const char* name, const char* far, ef_decision* out) {
    return guard([&] {
        check_model(g, b);
        need(name, "name"), need(out, "out");
        double thr = gallery_threshold(g, b, far);
        std::vector<uint8_t> code;
        if (!g->g->template_code(name, code)) ef::fail(EF_ERR_NOT_ENROLLED, std::string("'") + name + "' is not enrolled in " + g->g->path);
        out->threshold = (float)thr, out->match = 0, out->similarity = NAN;
        need_gate(f, EF_MODE_VERIFY);
        same_dim(b, f);
        float s = g->g->codec().similarity(f->embedding.data(), code.data());
        out->similarity = s, out->match = s >= thr;
    });
}

ef_status ef_identify(ef_gallery* g, const ef_bundle* b, const ef_face* f, int top_k, const char* far, const char** name, float* score,
                      ef_match* cands, size_t* n_cands) {
    return guard([&] {
        // FaceRecognizer.identify: a programming error, refused before anything is looked at
        if (top_k < 1) ef::fail(EF_ERR_ARGUMENT, "top_k must be a whole number >= 1, got " + std::to_string(top_k));
        check_model(g, b);
        need(name, "name"), need(score, "score");
        double thr = gallery_threshold(g, b, far);
        *name = nullptr, *score = NAN;
        need_gate(f, EF_MODE_VERIFY);
        same_dim(b, f);
        auto ms = g->g->search(f->embedding.data(), top_k);
        size_t cap = n_cands ? *n_cands : 0;
        if (cands != nullptr && (size_t)std::max(top_k, 0) > cap) ef::fail(EF_ERR_ARGUMENT, "candidate buffer smaller than top_k");
        size_t n = cap;
        fill_matches(g, ms, cands, &n);
        if (n_cands) *n_cands = n;
        g->names.push_back(ms.empty() || ms[0].score < thr ? "unknown" : ms[0].name);
        *name = g->names.back().c_str();
        // names[] may have reallocated: point the candidates at the final storage
        if (cands != nullptr)
            for (size_t i = 0; i < ms.size() && i < cap; ++i) cands[i].name = g->names[i].c_str();
        if (!ms.empty()) *score = ms[0].score;
    });
}

ef_status edgeface_check_conformance(const ef_bundle* b, ef_conformance* out) {
    return guard([&] {
        need(b, "bundle"), need(out, "out");
        std::string dir = b->b->dir + "/conformance";
        std::ifstream f(dir + "/expected.json", std::ios::binary);
        if (!f) ef::fail(EF_ERR_NO_CONFORMANCE, b->b->dir + ": bundle has no conformance set (" + dir + "/expected.json missing)");
        std::stringstream ss;
        ss << f.rdbuf();
        ef::json exp;
        try {
            exp = ef::json::parse(ss.str());
            const auto& card = b->b->card;
            std::vector<std::string> names = exp.at("faces").get<std::vector<std::string>>();
            std::vector<uint8_t> crops;
            for (auto& n : names) {
                auto img = ef::read_image_file(dir + "/" + n, 1);  // stored crops: no size limit
                if (img.width != card.width || img.height != card.height) ef::fail(EF_ERR_BUNDLE, dir + "/" + n + ": not a crop of the bundle's size");
                crops.insert(crops.end(), img.rgb.begin(), img.rgb.end());
            }
            auto emb = b->b->embed(crops.data(), names.size());
            int d = card.dim;
            const auto& ref = exp.at("embeddings");
            double mn = 2, sum = 0;
            for (size_t i = 0; i < names.size(); ++i) {
                double c = 0;
                for (int k = 0; k < d; ++k) c += (double)emb[i * d + k] * ref.at(i).at(k).get<double>();
                mn = std::min(mn, c), sum += c;
            }
            std::map<std::string, size_t> idx;
            for (size_t i = 0; i < names.size(); ++i) idx[names[i]] = i;
            const auto& tol = exp.at("tolerance");
            double margin = tol.at("decision_margin").get<double>();
            int mism = 0;
            for (const auto& p : exp.at("pairs")) {
                size_t a = idx.at(p.at("a").get<std::string>()), c = idx.at(p.at("b").get<std::string>());
                double s = 0;
                for (int k = 0; k < d; ++k) s += (double)emb[a * d + k] * emb[c * d + k];
                for (auto it = exp.at("thresholds").begin(); it != exp.at("thresholds").end(); ++it) {
                    double t = it.value().get<double>();
                    bool want = p.at("same_at_far_" + it.key()).get<bool>();
                    if ((s >= t) != want && std::fabs(s - t) > margin) ++mism;
                }
            }
            out->faces = (int)names.size();
            out->pairs = (int)exp.at("pairs").size();
            out->cosine_min = mn;
            out->cosine_mean = names.empty() ? 0 : sum / names.size();
            out->required_min_cosine = tol.at("min_cosine_to_expected").get<double>();
            out->decision_mismatches = mism;
            out->passed = !names.empty() && mn >= out->required_min_cosine && mism == 0;
        } catch (const ef::json::exception& e) {
            ef::fail(EF_ERR_BUNDLE, dir + "/expected.json: " + e.what());
        } catch (const std::out_of_range& e) {
            ef::fail(EF_ERR_BUNDLE, dir + "/expected.json: a pair names an unknown face");
        }
    });
}

}  // extern "C"
