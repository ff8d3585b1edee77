// A bounded random fuzz harness over the C ABI: random and mutated images, landmarks (NaN, inf,
// huge, wrong counts), sizes, NULLs, codec names, gallery files. Every call must return a status
// (never crash, never leak under AddressSanitizer) and a failure must come with a message.
// Bundle manifests too: edgeface.json mutated (bytes, and JSON values swapped for wrong types, NaN,
// huge numbers, deep nesting), re-sealed so the mutation reaches the schema and semantic rules; a
// refusal must name its rule (ef_last_bundle_kind), never be an internal error.
//   edgeface_fuzz BUNDLE SEED_IMAGE SCRATCH [ITERATIONS] [SEED]
#include <openssl/evp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgeface.h"

using json = nlohmann::json;
namespace fs = std::filesystem;

static std::string sha256_hex(const std::string& bytes) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(bytes.data(), bytes.size(), d, &n, EVP_sha256(), nullptr);
    static const char* H = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) s += H[d[i] >> 4], s += H[d[i] & 15];
    return s;
}

static int failures = 0;
static void check(ef_status st, const char* what) {
    if (st != EF_OK && std::strlen(ef_last_error()) == 0) {
        std::cerr << what << ": status " << ef_status_kind(st) << " without a message\n";
        ++failures;
    }
    if (std::string(ef_status_kind(st)) == "unknown") {
        std::cerr << what << ": unknown status " << (int)st << "\n";
        ++failures;
    }
}

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: edgeface_fuzz BUNDLE SEED_IMAGE SCRATCH [ITERATIONS] [SEED]\n";
        return 2;
    }
    int iters = argc > 4 ? std::atoi(argv[4]) : 300;
    std::mt19937_64 rng(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1234);
    ef_bundle* b = nullptr;
    if (ef_bundle_open(argv[1], 1, &b) != EF_OK) {
        std::cerr << "bundle: " << ef_last_error() << "\n";
        return 1;
    }
    std::ifstream f(argv[2], std::ios::binary);
    std::vector<uint8_t> seed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::string scratch = argv[3];
    auto u = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
    auto ri = [&](long lo, long hi) { return std::uniform_int_distribution<long>(lo, hi)(rng); };
    const double specials[] = {NAN, INFINITY, -INFINITY, 1e300, -1e300, 0.0, -0.0, 1e-300, 2147483648.0, -1.0};
    int dim = ef_bundle_embedding_size(b);
    int accepted = 0;
    for (int it = 0; it < iters; ++it) {
        // 1. mutated encoded image (bit flips, truncation, garbage) + random landmarks
        std::vector<uint8_t> bytes = seed;
        int op = (int)ri(0, 3);
        if (op == 0 && !bytes.empty()) {
            for (int k = 0; k < ri(1, 20); ++k) bytes[ri(0, bytes.size() - 1)] ^= (uint8_t)ri(1, 255);
        } else if (op == 1) {
            bytes.resize(ri(0, bytes.size()));
        } else if (op == 2) {
            bytes.resize(ri(0, 4096));
            for (auto& x : bytes) x = (uint8_t)ri(0, 255);
        }
        size_t nlm = ri(0, 3) == 0 ? (size_t)ri(0, 14) : 10;
        std::vector<double> lm(nlm + 1);
        for (auto& v : lm) v = ri(0, 9) == 0 ? specials[ri(0, 9)] : u(-50, 300);
        ef_face* face = nullptr;
        ef_status st = ef_analyze_encoded(b, bytes.empty() ? nullptr : bytes.data(), bytes.size(), lm.data(), nlm, u(-1, 1), &face);
        check(st, "analyze_encoded");
        if (st == EF_OK) {
            ++accepted;
            size_t d = 0;
            const float* e = ef_face_embedding(face, &d);
            for (size_t k = 0; k < d; ++k)
                if (!std::isfinite(e[k])) {
                    std::cerr << "non-finite embedding accepted\n";
                    ++failures;
                    break;
                }
            int match;
            float sim;
            check(ef_compare(b, face, face, ri(0, 1) ? "1e-3" : "1e-9", &match, &sim), "compare");
        }
        ef_face_free(face);
        // 2. raw pixels of random (possibly absurd) sizes
        int w = (int)(ri(0, 4) == 0 ? ri(-5, 30) : ri(24, 300)), h = (int)(ri(0, 4) == 0 ? ri(-5, 30) : ri(24, 300));
        std::vector<uint8_t> px((size_t)std::max(w, 1) * std::max(h, 1) * 3);
        for (auto& x : px) x = (uint8_t)ri(0, 255);
        st = ef_analyze_rgb(b, ri(0, 20) == 0 ? nullptr : px.data(), w, h, lm.data(), nlm, -1, &face);
        check(st, "analyze_rgb");
        ef_face_free(face);
        // 3. codecs with random names / dims / values
        const char* codecs[] = {"float32", "fp16", "int8", "binary", "binary256", "binary512", "nope", ""};
        const char* cname = codecs[ri(0, 7)];
        int cd = ri(0, 5) == 0 ? (int)ri(-3, 3) : dim;
        std::vector<float> v((size_t)std::max(cd, 1));
        for (auto& x : v) x = ri(0, 30) == 0 ? (float)specials[ri(0, 9)] : (float)u(-1, 1);
        size_t n = 0;
        st = ef_codec_size(cname, cd, &n);
        check(st, "codec_size");
        if (st == EF_OK) {
            std::vector<uint8_t> code(n);
            check(ef_codec_encode(cname, v.data(), cd, code.data(), n), "codec_encode");
            float s;
            check(ef_codec_similarity(cname, v.data(), cd, code.data(), ri(0, 5) ? n : n + 1, &s), "codec_similarity");
        }
        std::vector<float> q((size_t)dim);
        for (auto& x : q) x = (float)u(-1, 1);
        // 4. NULL handles and arguments
        check(ef_analyze_rgb(nullptr, px.data(), w, h, lm.data(), nlm, -1, &face), "null bundle");
        check(ef_analyze_file(b, nullptr, lm.data(), nlm, -1, &face), "null path");
        check(ef_gallery_search(nullptr, q.data(), dim, 3, nullptr, &n), "null gallery");
        // 5. gallery files with random content
        if (it % 10 == 0) {
            std::string p = scratch + "/fuzz-" + std::to_string(it) + ".db";
            std::vector<uint8_t> junk((size_t)ri(0, 8192));
            for (auto& x : junk) x = (uint8_t)ri(0, 255);
            if (ri(0, 1)) std::memcpy(junk.data(), "SQLite format 3\0", std::min<size_t>(16, junk.size()));
            std::ofstream(p, std::ios::binary).write((const char*)junk.data(), (std::streamsize)junk.size());
            ef_gallery* g = nullptr;
            st = ef_gallery_open(p.c_str(), b, nullptr, (int)ri(0, 1), &g);
            check(st, "gallery_open junk");
            if (st == EF_OK) {
                ef_match m[3];
                size_t k = 3;
                check(ef_gallery_search(g, q.data(), dim, 3, m, &k), "gallery_search junk");
            }
            ef_gallery_close(g);
        }
    }
    // 6. mutated manifests in a copy of the bundle, re-sealed
    fs::path fb = fs::path(scratch) / "fuzz-bundle";
    fs::remove_all(fb);
    fs::copy(argv[1], fb, fs::copy_options::recursive);
    std::ifstream mf(fb / "edgeface.json", std::ios::binary);
    const std::string manifest((std::istreambuf_iterator<char>(mf)), std::istreambuf_iterator<char>());
    const json meta = json::parse(manifest);
    const char* weird[] = {"NaN", "-Infinity", "1e999", "-1e999", "1e-400", "3.0", "true", "null", "\"\"", "\"../../etc/passwd\"", "[]", "{}",
                           "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "-0.5", "2", "65537", "\"1e-3\"",
                           "\"\\u0000\"", "99999999999999999999999"};
    std::map<std::string, int> kinds;
    int manifests = iters / 2 + 1;
    for (int it = 0; it < manifests; ++it) {
        std::string text;
        int op = (int)ri(0, 3);
        if (op == 0) {  // byte mutations
            text = manifest;
            for (int k = 0; k < ri(1, 8); ++k) text[ri(0, text.size() - 1)] = (char)ri(0, 255);
        } else if (op == 1) {  // truncated, or nested far too deep
            text = ri(0, 1) ? manifest.substr(0, ri(0, manifest.size())) : std::string(ri(900, 5000), '[') + std::string(ri(0, 5000), ']');
        } else {  // a JSON value somewhere replaced by a weird one, or a key dropped
            json m = meta;
            std::vector<json::json_pointer> ptrs;
            json flat = m.flatten();
            for (auto& [k, v] : flat.items()) ptrs.emplace_back(k);
            auto ptr = ptrs[ri(0, ptrs.size() - 1)];
            for (int up = (int)ri(0, 3); up > 0 && !ptr.empty(); --up) ptr = ptr.parent_pointer();
            std::string w = weird[ri(0, sizeof weird / sizeof *weird - 1)];
            if (ri(0, 4) == 0 && !ptr.empty()) {
                json& parent = m[ptr.parent_pointer()];
                if (parent.is_object()) parent.erase(ptr.back());
                text = m.dump();
            } else {
                const std::string mark = "\"@@WEIRD@@\"";
                m[ptr] = "@@WEIRD@@";
                text = m.dump();
                text.replace(text.find(mark), mark.size(), w);
            }
        }
        std::ofstream(fb / "edgeface.json", std::ios::binary | std::ios::trunc) << text;
        std::ofstream(fb / "edgeface.json.sha256", std::ios::trunc) << sha256_hex(text) << "  edgeface.json\n";
        ef_bundle* x = nullptr;
        ef_status st = ef_bundle_open(fb.c_str(), 1, &x);
        check(st, "bundle_open mutated manifest");
        std::string bk = ef_last_bundle_kind();
        kinds[st == EF_OK ? "ok" : bk.empty() ? std::string("NO-KIND:") + ef_status_kind(st) : bk]++;
        if (st != EF_OK && (bk.empty() || st == EF_ERR_RUNTIME)) {
            std::cerr << "mutated manifest refused without a rule: " << ef_status_kind(st) << ": " << ef_last_error() << "\n";
            ++failures;
        }
        ef_bundle_close(x);
    }
    ef_bundle_close(b);
    std::string kj;
    for (auto& [k, n] : kinds) kj += (kj.empty() ? "" : ", ") + ("\"" + k + "\": " + std::to_string(n));
    std::printf("{\"iterations\": %d, \"accepted_faces\": %d, \"manifests\": %d, \"manifest_outcomes\": {%s}, \"failures\": %d}\n", iters, accepted,
                manifests, kj.c_str(), failures);
    return failures ? 1 : 0;
}
