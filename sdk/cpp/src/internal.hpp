// Internal C++ API of the core. Everything here may throw ef::Error; capi.cpp turns it into
// status codes so no exception crosses the C ABI.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgeface.h"

namespace ef {

using json = nlohmann::json;

struct Error : std::exception {
    ef_status status;
    std::string message;
    std::string bundle_kind;  // a refused bundle: the rule broken (Python BundleError.kind), see ef_last_bundle_kind
    Error(ef_status s, std::string m, std::string k = "") : status(s), message(std::move(m)), bundle_kind(std::move(k)) {}
    const char* what() const noexcept override { return message.c_str(); }
};
[[noreturn]] inline void fail(ef_status s, const std::string& m) { throw Error(s, m); }
// A bundle refused by rule `kind` (edgeface/runtime/manifest.py KINDS; docs/runtime.md "Bundle refusal rules").
[[noreturn]] inline void refuse(const char* kind, const std::string& m) {
    throw Error(std::string(kind) == "not_found" ? EF_ERR_MISSING : EF_ERR_BUNDLE, m, kind);
}

// -- images (image.cpp) ---------------------------------------------------------------------
constexpr int MIN_SIDE = 24;             // edgeface.core.imageio.MIN_SIDE
constexpr long long MAX_PIXELS = 200000000LL;  // edgeface.core.imageio.MAX_PIXELS

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height * width * 3
};
// min_side: the smallest side accepted (an app's photo: MIN_SIDE; a conformance crop: 1, as Python reads those as stored)
Image decode_image(const uint8_t* bytes, size_t size, const std::string& source, int min_side = MIN_SIDE);
Image read_image_file(const std::string& path, int min_side = MIN_SIDE);
void check_pixels(const uint8_t* rgb, int width, int height, const std::string& source);

// -- alignment (align.cpp) -------------------------------------------------------------------
using Landmarks = std::array<double, 10>;  // (x, y) x 5
Landmarks check_landmarks(const double* values, size_t n, const char* what = "landmarks");
// The Python FaceRecognizer.locate checks on app landmarks (eyes inside, eyes apart).
void check_app_landmarks(const Landmarks& lm, int width, int height);
std::array<double, 10> template_landmarks(const std::string& name, int height, int width);
std::array<double, 6> similarity_transform(const std::array<double, 10>& src, const std::array<double, 10>& dst);
std::vector<uint8_t> warp_affine(const uint8_t* rgb, int width, int height, const std::array<double, 6>& m, int out_h, int out_w);
std::vector<uint8_t> align_face(const uint8_t* rgb, int width, int height, const Landmarks& lm, const std::string& templ, int out_h,
                                int out_w);
struct Pose {
    double roll, yaw, pitch, interocular;
};
Pose estimate_pose(const Landmarks& lm);
double landmark_residual(const Landmarks& lm, const std::array<double, 10>& templ);  // templ: crop pixels

// -- quality gate (quality.cpp) --------------------------------------------------------------
using Thresholds = std::map<std::string, double>;
struct GateThresholds {
    Thresholds verify, enroll;
    const Thresholds& of(ef_mode m) const { return m == EF_MODE_ENROLL ? enroll : verify; }
};
GateThresholds merge_thresholds(const json& overrides);
using Measures = std::map<std::string, double>;
Measures measure(const uint8_t* crop, int h, int w, const Landmarks& lm, double detector_score, bool has_score, double flip_similarity,
                 bool has_flip);
// quality.nonface: one unit prototype per synthetic non-face family and its limit (calibrated at export).
struct Nonface {
    int dim = 0;
    std::vector<float> prototypes;  // n x dim
    std::vector<float> limits;      // n
    bool present() const { return !limits.empty(); }
    double margin(const float* embedding) const;  // quality.nonface_margins: max over families of similarity - limit
};
// What is wrong with a bundle's quality.nonface section (quality.check_nonface_section); empty: usable.
std::vector<std::string> nonface_section_errors(const json& section, int dims);
Nonface parse_nonface(const json& section, int dims);
struct Check {
    std::string name, kind, message;
    double value, threshold;
    bool passed;
};
std::vector<Check> assess(const Measures& m, const Thresholds& thr);
double quality_weight(const Measures& m);

// -- codecs (codecs.cpp) -------------------------------------------------------------------------
struct Codec {
    std::string name;
    int dim = 0;
    bool hamming = false;
    int bits = 0;                   // Hamming codecs: code bits
    std::vector<float> projection;  // binary256/512: dim x bits, row-major
    size_t bytes() const;
    std::vector<uint8_t> encode(const float* x) const;
    std::vector<float> decode(const uint8_t* code) const;  // cosine codecs only
    float similarity(const float* query, const uint8_t* code) const;
};
const Codec& get_codec(const std::string& name, int dim);  // cached per (name, dim)
bool is_codec(const std::string& name);

// -- bundle (bundle.cpp) ---------------------------------------------------------------------------
struct Card {
    json dict;  // ModelCard.to_dict() after ModelCard's normalisation
    std::string name, templ;
    int height = 0, width = 0, dim = 0;
    std::string to_json() const;     // json.dumps(card.to_dict(), sort_keys=True)
    std::string fingerprint() const; // sha256(to_json())[:16]
};
Card card_from_json(const json& j);
std::string python_json_dumps(const json& j);
std::string py_float(double v);  // Python's repr(float)  // json.dumps(j, sort_keys=True) with Python's formatting
std::string sha256_hex(const std::string& bytes);
std::string file_sha256(const std::string& path);
void validate_schema(const json& meta, const std::string& where);
// manifest.semantic_errors: (kind, message) for every rule a schema cannot say (manifest.cpp).
std::vector<std::pair<std::string, std::string>> semantic_errors(const json& meta);
bool safe_relative(const std::string& name);

struct Runner;  // ONNX Runtime session (embed.cpp)
struct Bundle {
    std::string dir;
    json meta;
    Card card;
    std::map<std::string, double> cosine_thresholds;
    std::map<std::string, std::map<std::string, double>> codec_thresholds;  // Hamming codecs
    GateThresholds gate;
    Nonface nonface;
    std::shared_ptr<Runner> runner;
    std::vector<float> embed(const uint8_t* crops, size_t n) const;  // n x dim, L2-normalised
    double threshold(const std::string& codec, const std::string& far) const;
};
std::unique_ptr<Bundle> open_bundle(const std::string& dir, int threads);
std::shared_ptr<Runner> make_runner(const std::string& model_path, const json& input, const Card& card, int threads);
std::vector<float> run_model(Runner& r, const uint8_t* crops, size_t n);  // raw outputs, n x dim
bool runner_takes_uint8(const Runner& r);

// -- gallery (gallery.cpp) ---------------------------------------------------------------------------
struct Match {
    std::string name;
    float score;
};
struct GalleryImpl;
struct Gallery {
    std::unique_ptr<GalleryImpl> impl;
    std::string path, codec_name, model_name, fingerprint;
    int dim = 0;
    Gallery(const std::string& path, const Card* card, const std::string& codec, bool readonly);
    ~Gallery();
    size_t count();
    void add(const std::string& name, const float* templ, int n_images, double quality);
    bool remove(const std::string& name);
    bool template_code(const std::string& name, std::vector<uint8_t>& out);
    std::vector<Match> search(const float* query, int top_k);
    const Codec& codec() const { return get_codec(codec_name, dim); }
};

}  // namespace ef
