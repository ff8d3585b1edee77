// The quality gate of edgeface.runtime.quality: same measures, names, thresholds, decisions, messages.
#include <cmath>
#include <cstdio>
#include <set>

#include "internal.hpp"

namespace ef {

static const Thresholds DEFAULT_VERIFY = {
    {"min_interocular", 16.0}, {"min_face_size", 40.0}, {"min_sharpness", 12.0}, {"min_brightness", 35.0},
    {"max_brightness", 225.0}, {"min_contrast", 18.0},  {"max_abs_yaw", 45.0},   {"max_abs_pitch", 35.0},
    {"max_abs_roll", 40.0},    {"min_detector_score", 0.6}, {"min_flip_similarity", 0.80}, {"max_nonface_margin", 0.0},
    {"max_landmark_residual", 0.25}};
static const Thresholds DEFAULT_ENROLL = {
    {"min_interocular", 24.0}, {"min_face_size", 56.0}, {"min_sharpness", 25.0}, {"min_brightness", 50.0},
    {"max_brightness", 210.0}, {"min_contrast", 22.0},  {"max_abs_yaw", 30.0},   {"max_abs_pitch", 25.0},
    {"max_abs_roll", 30.0},    {"min_detector_score", 0.8}, {"min_flip_similarity", 0.88}, {"max_nonface_margin", 0.0},
    {"max_landmark_residual", 0.21}};
const std::map<std::string, std::string>& quality_aliases();  // manifest.cpp
// provenance and the non-face prototypes, not thresholds
static const std::set<std::string> INFO_KEYS = {"source", "notes", "description", "nonface"};

struct CheckSpec {
    const char *name, *key, *kind, *message;  // message: printf format with the value then the threshold
};
static const CheckSpec CHECKS[] = {
    {"interocular", "min_interocular", "min", "face too small (eyes %.0f px apart, need %.0f): move closer or use a larger image"},
    {"face_size", "min_face_size", "min", "face box too small (%.0f px, need %.0f)"},
    {"sharpness", "min_sharpness", "min", "image too blurred (Laplacian variance %.1f < %.1f)"},
    {"brightness", "min_brightness", "min", "too dark (mean level %.0f < %.0f)"},
    {"brightness", "max_brightness", "max", "over-exposed (mean level %.0f > %.0f)"},
    {"contrast", "min_contrast", "min", "too little contrast (std %.1f < %.1f)"},
    {"abs_yaw", "max_abs_yaw", "max", "head turned too far sideways (yaw %.0f\xc2\xb0 > %.0f\xc2\xb0)"},
    {"abs_pitch", "max_abs_pitch", "max", "head tilted too far up/down (pitch %.0f\xc2\xb0 > %.0f\xc2\xb0)"},
    {"abs_roll", "max_abs_roll", "max", "head rotated too far (roll %.0f\xc2\xb0 > %.0f\xc2\xb0)"},
    {"landmark_residual", "max_landmark_residual", "max",
     "landmarks do not have the shape of a face (residual %.3f of the fit onto the template > %.3f: swapped, mirrored or misplaced points)"},
    {"detector_score", "min_detector_score", "min", "detector unsure this is a face (score %.2f < %.2f)"},
    {"flip_similarity", "min_flip_similarity", "min",
     "unstable embedding: face and its mirror image disagree (cosine %.2f < %.2f; occlusion, pose or lighting)"},
    {"nonface_margin", "max_nonface_margin", "max",
     "not a face: the embedding lies with those of noise / blank / texture crops (margin %+.3f over the calibrated limit)"},
};

static double as_number(const json& v, const std::string& key, const std::string& where) {
    if (v.is_number() || v.is_boolean()) return v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>();
    if (v.is_string()) {
        try {
            size_t used = 0;
            double d = std::stod(v.get<std::string>(), &used);
            if (used == v.get<std::string>().size()) return d;
        } catch (...) {
        }
    }
    fail(EF_ERR_BUNDLE, "quality thresholds (" + where + "): '" + key + "' must be a number, got " + v.dump());
}

static Thresholds clean(const json& d, const std::string& where) {
    Thresholds res;
    for (auto it = d.begin(); it != d.end(); ++it) {
        const std::string& k = it.key();
        if (INFO_KEYS.count(k) || k == "verify" || k == "enroll") continue;
        auto a = quality_aliases().find(k);
        std::string key = a == quality_aliases().end() ? k : a->second;
        if (!DEFAULT_VERIFY.count(key)) fail(EF_ERR_BUNDLE, "quality thresholds (" + where + "): unknown key '" + k + "'");
        res[key] = as_number(it.value(), k, where);
    }
    return res;
}

GateThresholds merge_thresholds(const json& overrides) {
    GateThresholds out{DEFAULT_VERIFY, DEFAULT_ENROLL};
    if (!overrides.is_object() || overrides.empty()) return out;
    for (auto& [k, v] : clean(overrides, "flat")) {
        out.verify[k] = v;
        double e = out.enroll[k];
        out.enroll[k] = k.rfind("min_", 0) == 0 ? std::max(e, v) : std::min(e, v);  // enrolment never looser
    }
    if (overrides.contains("verify") && overrides["verify"].is_object())
        for (auto& [k, v] : clean(overrides["verify"], "verify")) out.verify[k] = v;
    if (overrides.contains("enroll") && overrides["enroll"].is_object())
        for (auto& [k, v] : clean(overrides["enroll"], "enroll")) out.enroll[k] = v;
    return out;
}

Measures measure(const uint8_t* crop, int h, int w, const Landmarks& lm, double detector_score, bool has_score, double flip, bool has_flip) {
    Pose pose = estimate_pose(lm);
    std::vector<float> g((size_t)h * w);
    for (size_t i = 0; i < g.size(); ++i)
        g[i] = (float)crop[3 * i] * 0.299f + (float)crop[3 * i + 1] * 0.587f + (float)crop[3 * i + 2] * 0.114f;
    // variance of the 4-neighbour Laplacian over the interior
    double sum = 0, sum2 = 0;
    size_t n = 0;
    std::vector<double> lap;
    lap.reserve((size_t)std::max(0, h - 2) * std::max(0, w - 2));
    for (int y = 1; y < h - 1; ++y)
        for (int x = 1; x < w - 1; ++x) {
            float v = g[(size_t)y * w + x - 1] + g[(size_t)y * w + x + 1] + g[(size_t)(y - 1) * w + x] + g[(size_t)(y + 1) * w + x] -
                      4.0f * g[(size_t)y * w + x];
            lap.push_back(v);
            sum += v;
            ++n;
        }
    double mean = n ? sum / n : 0;
    for (double v : lap) sum2 += (v - mean) * (v - mean);
    double sharp = n ? sum2 / n : 0;
    // central region: rows int(0.3h)..int(0.9h), cols int(0.2w)..int(0.8w)
    int y0 = (int)(0.3 * h), y1 = (int)(0.9 * h), x0 = (int)(0.2 * w), x1 = (int)(0.8 * w);
    double s = 0, s2 = 0;
    size_t m = 0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) s += g[(size_t)y * w + x], ++m;
    double bmean = m ? s / m : 0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) s2 += (g[(size_t)y * w + x] - bmean) * (g[(size_t)y * w + x] - bmean);
    Measures out = {{"interocular", pose.interocular},
                    {"sharpness", sharp},
                    {"brightness", bmean},
                    {"contrast", m ? std::sqrt(s2 / m) : 0},
                    {"yaw", pose.yaw},
                    {"pitch", pose.pitch},
                    {"roll", pose.roll},
                    {"abs_yaw", std::fabs(pose.yaw)},
                    {"abs_pitch", std::fabs(pose.pitch)},
                    {"abs_roll", std::fabs(pose.roll)}};
    if (has_score) out["detector_score"] = detector_score;
    if (has_flip) out["flip_similarity"] = flip;
    return out;
}

std::vector<Check> assess(const Measures& m, const Thresholds& thr) {
    std::vector<Check> checks;
    for (const auto& c : CHECKS) {
        auto it = m.find(c.name);
        if (it == m.end()) continue;  // e.g. no detector score for the app's own landmarks
        double v = it->second, t = thr.at(c.key);
        bool is_min = std::string(c.kind) == "min";
        bool ok = std::isfinite(v) && (is_min ? v >= t : v <= t);
        char buf[512] = "";
        if (!ok) snprintf(buf, sizeof buf, c.message, v, t);
        checks.push_back({c.name, c.kind, buf, v, t, ok});
    }
    return checks;
}

// -- non-face evidence (quality.nonface_margins, check_nonface_section) ---------------------------
std::vector<std::string> nonface_section_errors(const json& section, int dims) {
    if (!section.is_object()) return {"quality.nonface: expected an object"};
    const json* protos = section.contains("prototypes") ? &section["prototypes"] : nullptr;
    const json* limits = section.contains("limits") ? &section["limits"] : nullptr;
    if (!protos || !limits || !protos->is_array() || !limits->is_array() || protos->empty() || protos->size() != limits->size())
        return {"quality.nonface: needs 'prototypes' and 'limits' lists of the same non-zero length"};
    std::vector<std::string> errs;
    for (size_t i = 0; i < protos->size(); ++i) {
        const json &p = (*protos)[i], &lim = (*limits)[i];
        bool ok = p.is_array() && p.size() == (size_t)dims;
        double norm2 = 0;
        for (size_t k = 0; ok && k < p.size(); ++k) {
            ok = p[k].is_number() && std::isfinite(p[k].get<double>());
            if (ok) norm2 += p[k].get<double>() * p[k].get<double>();
        }
        if (!ok || std::fabs(std::sqrt(norm2) - 1) > 1e-3)
            errs.push_back("quality.nonface.prototypes[" + std::to_string(i) + "]: not a unit vector of " + std::to_string(dims) + " finite numbers");
        if (!lim.is_number() || !(lim.get<double>() >= -1.0 && lim.get<double>() <= 1.0))
            errs.push_back("quality.nonface.limits[" + std::to_string(i) + "]: " + lim.dump() + " is not a similarity in [-1, 1]");
    }
    return errs;
}

Nonface parse_nonface(const json& section, int dims) {
    Nonface nf;
    auto errs = nonface_section_errors(section, dims);
    if (!errs.empty()) refuse("quality", errs[0]);
    nf.dim = dims;
    for (size_t i = 0; i < section["prototypes"].size(); ++i) {
        for (auto& v : section["prototypes"][i]) nf.prototypes.push_back((float)v.get<double>());
        nf.limits.push_back((float)section["limits"][i].get<double>());
    }
    return nf;
}

double Nonface::margin(const float* e) const {
    // float32 like numpy's (N, D) @ (D, F) - limits; the sums accumulate in double (within 1e-6 of numpy's)
    float best = -INFINITY;
    for (size_t f = 0; f < limits.size(); ++f) {
        double s = 0;
        for (int k = 0; k < dim; ++k) s += (double)e[k] * prototypes[f * dim + k];
        best = std::max(best, (float)s - limits[f]);
    }
    return best;
}

double quality_weight(const Measures& m) {
    auto it = m.find("flip_similarity");
    if (it == m.end() || !std::isfinite(it->second)) return 1.0;
    return std::min(1.0, std::max(0.05, it->second));
}

}  // namespace ef
