// The semantic rules of edgeface/runtime/manifest.py (semantic_errors): what a JSON schema cannot
// say about edgeface.json. Each rule gives the same refusal kind as the Python runtime; the
// messages say the same things. Run on a manifest that already passed the schema.
#include <cmath>
#include <cstdlib>
#include <set>

#include "internal.hpp"

namespace ef {

using Errors = std::vector<std::pair<std::string, std::string>>;

static bool finite_number(const json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

static std::string num(double v) {
    char b[48];
    snprintf(b, sizeof b, "%.6g", v);
    return b;
}

bool safe_relative(const std::string& name) {
    // manifest.safe_relative: a bundle-relative POSIX path that cannot leave the bundle. pathlib drops
    // empty and "." parts, so only ".." decides among the parts; "//" is refused outright.
    if (name.empty() || name[0] == '/' || name.find("//") != std::string::npos) return false;
    for (unsigned char c : name)
        if (c < 32 || c == '\\' || c == ':') return false;
    size_t start = 0;
    while (start <= name.size()) {
        size_t end = name.find('/', start);
        if (end == std::string::npos) end = name.size();
        if (name.compare(start, end - start, "..") == 0 && end - start == 2) return false;
        start = end + 1;
    }
    return true;
}

// manifest.far_value: Python float(key) for a rate in (0, 1), else "none" (returns false).
static bool far_value(const std::string& key, double& out) {
    // float() strips surrounding whitespace and accepts '_' between digits; it refuses hex
    const char* ws = " \t\n\r\v\f";
    size_t a = key.find_first_not_of(ws), b = key.find_last_not_of(ws);
    if (a == std::string::npos) return false;
    std::string s = key.substr(a, b - a + 1), t;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '_') {
            if (i == 0 || i + 1 == s.size() || !isdigit((unsigned char)s[i - 1]) || !isdigit((unsigned char)s[i + 1])) return false;
            continue;
        }
        if (s[i] == 'x' || s[i] == 'X') return false;
        t += s[i];
    }
    char* end = nullptr;
    double f = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size()) return false;
    if (!(f > 0.0 && f < 1.0)) return false;
    out = f;
    return true;
}

// Inverse of the standard normal CDF (statistics.NormalDist().inv_cdf): Acklam's rational
// approximation polished by two Newton steps on erfc, well below 1e-12 of the exact value.
static double normal_inv_cdf(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00};
    double x;
    if (p < 0.02425) {
        double q = std::sqrt(-2 * std::log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else if (p <= 1 - 0.02425) {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    } else {
        double q = std::sqrt(-2 * std::log(1 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    for (int i = 0; i < 2; ++i) {
        double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
        double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
        x = x - u / (1 + x * u / 2);
    }
    return x;
}

// manifest.threshold_floor: half the similarity independent random directions reach at `far`.
static double threshold_floor(double far, int dims) { return 0.5 * normal_inv_cdf(1.0 - far) / std::sqrt((double)std::max(dims, 1)); }

static void threshold_errors(const json& at_far, int dims, const std::string& where, Errors& out) {
    struct Entry {
        double f, t;
        std::string key;
    };
    std::vector<Entry> by_far;
    for (auto it = at_far.begin(); it != at_far.end(); ++it) {
        double f = 0;
        const json& entry = it.value();
        if (!far_value(it.key(), f)) {
            out.push_back({"thresholds", where + ": FAR key '" + it.key() + "' is not a rate between 0 and 1 (write it like \"1e-3\")"});
            continue;
        }
        if (!entry.is_object() || !entry.contains("threshold") || !finite_number(entry["threshold"])) {
            out.push_back({"thresholds", where + " FAR " + it.key() + ": threshold is not a finite number"});
            continue;
        }
        double t = entry["threshold"].get<double>(), floor = threshold_floor(f, dims);
        if (!(floor <= t && t <= 1.0))
            out.push_back({"thresholds", where + " FAR " + it.key() + ": threshold " + num(t) + " is outside its plausible range [" + num(floor) +
                                             ", 1] for " + std::to_string(dims) + "-d similarities (a lower threshold would accept most impostors)"});
        by_far.push_back({f, t, it.key()});
    }
    std::sort(by_far.begin(), by_far.end(), [](const Entry& x, const Entry& y) {
        if (x.f != y.f) return x.f < y.f;
        if (x.t != y.t) return x.t < y.t;
        return x.key < y.key;
    });
    for (size_t i = 0; i + 1 < by_far.size(); ++i)
        if (by_far[i].t < by_far[i + 1].t - 1e-9)
            out.push_back({"thresholds", where + ": threshold at FAR " + by_far[i].key + " (" + num(by_far[i].t) + ") is lower than at the looser FAR " +
                                             by_far[i + 1].key + " (" + num(by_far[i + 1].t) + ")"});
}

// manifest.QUALITY_RANGES and quality.ALIASES
static const std::map<std::string, std::pair<double, double>> QUALITY_RANGES = {
    {"min_interocular", {0.0, 10000.0}}, {"min_face_size", {0.0, 100000.0}}, {"min_sharpness", {0.0, 1e9}},
    {"min_brightness", {0.0, 255.0}},    {"max_brightness", {0.0, 255.0}},    {"min_contrast", {0.0, 255.0}},
    {"max_abs_yaw", {0.0, 180.0}},       {"max_abs_pitch", {0.0, 180.0}},     {"max_abs_roll", {0.0, 180.0}},
    {"min_detector_score", {0.0, 1.0}},  {"min_flip_similarity", {-1.0, 1.0}}, {"max_nonface_margin", {-1.0, 1.0}},
    {"max_landmark_residual", {0.0, 1.0}},  // in template inter-ocular distances; above 1 it accepts any 5 points
};
const std::map<std::string, std::string>& quality_aliases() {
    static const std::map<std::string, std::string> A = {
        {"min_detection_score", "min_detector_score"}, {"min_interocular_px", "min_interocular"}, {"min_face_size_px", "min_face_size"},
        {"max_abs_yaw_deg", "max_abs_yaw"},             {"max_abs_pitch_deg", "max_abs_pitch"},   {"max_abs_roll_deg", "max_abs_roll"}};
    return A;
}

static void quality_errors(const json& quality, int dims, Errors& out) {
    std::vector<std::pair<std::string, json>> sections;
    json flat = json::object();
    for (auto it = quality.begin(); it != quality.end(); ++it)
        if (it.key() != "verify" && it.key() != "enroll") flat[it.key()] = it.value();
    sections.push_back({"quality", flat});
    for (const char* m : {"verify", "enroll"})
        if (quality.contains(m)) sections.push_back({std::string("quality.") + m, quality[m]});
    for (auto& [where, section] : sections) {
        if (!section.is_object()) {
            out.push_back({"quality", where + ": expected an object"});
            continue;
        }
        for (auto it = section.begin(); it != section.end(); ++it) {
            const std::string& k = it.key();
            if (k == "source" || k == "notes" || k == "description") continue;
            if (k == "nonface" && where == "quality") {
                for (auto& e : nonface_section_errors(it.value(), dims)) out.push_back({"quality", e});
                continue;
            }
            auto a = quality_aliases().find(k);
            std::string key = a == quality_aliases().end() ? k : a->second;
            auto r = QUALITY_RANGES.find(key);
            if (r == QUALITY_RANGES.end()) {
                out.push_back({"quality", where + ": unknown quality threshold '" + k + "'"});
                continue;
            }
            const json& v = it.value();
            if (!finite_number(v) || v.get<double>() < r->second.first || v.get<double>() > r->second.second)
                out.push_back({"quality", where + "." + k + ": " + v.dump() + " is outside [" + num(r->second.first) + ", " + num(r->second.second) + "]"});
        }
    }
}

// Python list equality of two JSON arrays of numbers / nulls (1 == 1.0; null only equals null).
static bool py_list_eq(const json& a, const std::vector<json>& b) {
    if (!a.is_array() || a.size() != b.size()) return false;
    for (size_t i = 0; i < b.size(); ++i) {
        const json &x = a[i], &y = b[i];
        if (x.is_null() || y.is_null()) {
            if (x.is_null() != y.is_null()) return false;
        } else if (!(x.is_number() && y.is_number() && x.get<double>() == y.get<double>())) {
            return false;
        }
    }
    return true;
}

static std::string int_or_none(const json& v) { return v.is_number() ? v.dump() : "None"; }

Errors semantic_errors(const json& meta) {
    Errors out;
    const json& files = meta["files"];
    for (auto it = files.begin(); it != files.end(); ++it)
        if (!safe_relative(it.key())) out.push_back({"model_file", "file entry '" + it.key() + "' is not a plain relative path inside the bundle"});
    std::string mf = meta["model_file"];
    if (!safe_relative(mf)) {
        out.push_back({"model_file", "model_file '" + mf + "' is not a plain relative path inside the bundle"});
    } else if (!files.contains(mf)) {
        // a package directory (Core ML's .mlpackage) is covered by hashing the files inside it;
        // the loader then refuses any file in it that is not hashed
        std::string prefix = mf;
        while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
        prefix += "/";
        bool inside = false;
        for (auto it = files.begin(); it != files.end() && !inside; ++it) inside = it.key().compare(0, prefix.size(), prefix) == 0;
        if (!inside) out.push_back({"model_file", "model_file '" + mf + "' is not one of the hashed files: it would be loaded unchecked"});
    }
    if (meta.contains("detector") && meta["detector"].is_object())  // a bundled face detector: hashed like the model
        for (const char* key : {"file", "licence_file"}) {
            const json& det = meta["detector"];
            if (!det.contains(key) || det[key].is_null()) continue;
            std::string name = det[key];
            if (!safe_relative(name))
                out.push_back({"model_file", std::string("detector.") + key + " '" + name + "' is not a plain relative path inside the bundle"});
            else if (!files.contains(name))
                out.push_back({"model_file", std::string("detector.") + key + " '" + name + "' is not one of the hashed files: it would be loaded unchecked"});
        }
    if (meta.contains("conformance") && meta["conformance"].is_object() && meta["conformance"].contains("files") &&
        meta["conformance"]["files"].is_object())
        for (auto it = meta["conformance"]["files"].begin(); it != meta["conformance"]["files"].end(); ++it)
            if (!safe_relative(it.key()))
                out.push_back({"model_file", "conformance file entry '" + it.key() + "' is not a plain relative path inside the bundle"});

    const json &card = meta["card"], &inp = meta["input"], &outp = meta["output"];
    const json& emb = meta["embedding_size"];
    int dims = emb.get<int>();
    json h = nullptr, w = nullptr;
    if (card.contains("input_size") && card["input_size"].is_array() && card["input_size"].size() >= 2) h = card["input_size"][0], w = card["input_size"][1];
    if (!card.contains("embedding_size") || !(card["embedding_size"].is_number() && card["embedding_size"].get<double>() == emb.get<double>()))
        out.push_back({"input_contract", "embedding_size " + emb.dump() + " differs from the card's " +
                                             (card.contains("embedding_size") ? card["embedding_size"].dump() : std::string("None"))});
    const json& o1 = outp["shape"][1];
    if (!o1.is_null() && !(o1.is_number() && o1.get<double>() == emb.get<double>()))
        out.push_back({"input_contract", "output shape " + outp["shape"].dump() + " disagrees with embedding_size " + emb.dump()});
    if (!py_list_eq(meta["alignment"]["crop_size"], {h, w}))
        out.push_back({"input_contract", "alignment crop_size " + meta["alignment"]["crop_size"].dump() + " differs from the card's input_size [" +
                                             int_or_none(h) + ", " + int_or_none(w) + "]"});
    bool nhwc = inp["layout"] == "NHWC";
    const json& shape = inp["shape"];
    json spatial = nhwc ? json::array({shape[1], shape[2]}) : json::array({shape[2], shape[3]});
    const json& channels = nhwc ? shape[3] : shape[1];
    if (!py_list_eq(spatial, {h, w}) || !(channels.is_number() && channels.get<double>() == 3))
        out.push_back({"input_contract", "input shape " + shape.dump() + " (" + inp["layout"].get<std::string>() + ") does not hold " + int_or_none(h) +
                                             "x" + int_or_none(w) + "x3 crops"});
    bool in_graph = inp["normalization_in_graph"].get<bool>();
    std::string dtype = inp["dtype"];
    if (in_graph != (dtype == "uint8"))
        out.push_back({"input_contract", std::string("input.normalization_in_graph is ") + (in_graph ? "true" : "false") + " but the input dtype is " +
                                             dtype + ": edgeface graphs normalise exactly when they take uint8 crops"});
    if (in_graph && !py_list_eq(inp["value_range"], {json(0), json(255)}))
        out.push_back({"input_contract", "input value_range " + inp["value_range"].dump() + " must be [0, 255] for uint8 crops"});
    if (!in_graph) {
        for (const char* k : {"mean", "std"})
            if (inp.contains(k) && card.contains(k) && !card[k].is_null()) {
                bool same = card[k].is_array() && card[k].size() == inp[k].size();
                for (size_t i = 0; same && i < inp[k].size(); ++i) same = card[k][i].is_number() && card[k][i].get<double>() == inp[k][i].get<double>();
                if (!same) out.push_back({"input_contract", std::string("input.") + k + " " + inp[k].dump() + " differs from the card's " + card[k].dump()});
            }
        if (inp.contains("std"))
            for (auto& v : inp["std"])
                if (v.get<double>() == 0) {
                    out.push_back({"input_contract", "input.std holds a zero"});
                    break;
                }
    }

    const json& thr = meta["thresholds"];
    threshold_errors(thr["at_far"], dims, "thresholds.at_far", out);
    if (thr.contains("codecs"))
        for (auto it = thr["codecs"].begin(); it != thr["codecs"].end(); ++it) {
            const std::string& codec = it.key();
            if (!is_codec(codec)) {
                out.push_back({"thresholds", "thresholds.codecs: unknown codec '" + codec + "'"});
                continue;
            }
            int bits = codec == "binary256" ? 256 : codec == "binary512" ? 512 : dims;  // codec.code_bits, or the embedding size
            threshold_errors(it.value()["at_far"], bits, "thresholds.codecs." + codec + ".at_far", out);
        }
    quality_errors(meta["quality"], dims, out);
    return out;
}

}  // namespace ef
