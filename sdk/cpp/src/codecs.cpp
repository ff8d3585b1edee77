// Template codecs of edgeface.runtime.codecs: the same bytes for the same embedding.
#include <openssl/sha.h>

#include <cmath>
#include <cstring>
#include <mutex>

#include "internal.hpp"

namespace ef {

static const char* NAMES[] = {"float32", "fp16", "int8", "binary", "binary256", "binary512"};

bool is_codec(const std::string& name) {
    for (auto n : NAMES)
        if (name == n) return true;
    return false;
}

size_t Codec::bytes() const {
    if (name == "float32") return 4 * (size_t)dim;
    if (name == "fp16") return 2 * (size_t)dim;
    if (name == "int8") return 4 + (size_t)dim;
    return ((size_t)bits + 7) / 8;
}

// IEEE half from float, round to nearest even (numpy's astype(float16)).
static uint16_t to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x7fffffu;
    int exp = (int)((x >> 23) & 0xff);
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    int e = exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) ++half;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // may carry into the exponent: correct
    return (uint16_t)(sign | half);
}

static float from_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu, x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {
            float f = std::ldexp((float)mant, -24);
            return (h & 0x8000u) ? -f : f;
        }
    } else if (exp == 0x1f) {
        x = sign | 0x7f800000u | (mant << 13);
    } else {
        x = sign | ((uint32_t)(exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

static void check_finite(const float* x, int dim, const char* what) {
    for (int i = 0; i < dim; ++i)
        if (!std::isfinite(x[i])) fail(EF_ERR_ARGUMENT, std::string(what) + ": contains NaN or infinite values");
}

std::vector<uint8_t> Codec::encode(const float* x) const {
    check_finite(x, dim, "embeddings");
    std::vector<uint8_t> out(bytes(), 0);
    if (name == "float32") {
        std::memcpy(out.data(), x, 4 * (size_t)dim);  // little-endian hosts only (all Android/iOS/x86)
    } else if (name == "fp16") {
        for (int i = 0; i < dim; ++i) {
            uint16_t h = to_half(x[i]);
            out[2 * i] = h & 0xff, out[2 * i + 1] = h >> 8;
        }
    } else if (name == "int8") {
        float mx = 0;
        for (int i = 0; i < dim; ++i) mx = std::max(mx, std::fabs(x[i]));
        float scale = mx / 127.0f;
        if (!(scale > 0)) scale = 1.0f;
        std::memcpy(out.data(), &scale, 4);
        for (int i = 0; i < dim; ++i) {
            float q = std::nearbyint(x[i] / scale);
            q = std::min(127.0f, std::max(-127.0f, q));
            out[4 + i] = (uint8_t)(int8_t)q;
        }
    } else {
        for (int b = 0; b < bits; ++b) {
            bool bit;
            if (name == "binary") {
                bit = x[b] >= 0;
            } else {
                double acc = 0;
                for (int i = 0; i < dim; ++i) acc += (double)x[i] * projection[(size_t)i * bits + b];
                bit = (float)acc >= 0;
            }
            if (bit) out[b / 8] |= (uint8_t)(0x80u >> (b % 8));
        }
    }
    return out;
}

std::vector<float> Codec::decode(const uint8_t* code) const {
    std::vector<float> out(dim);
    if (name == "float32") {
        std::memcpy(out.data(), code, 4 * (size_t)dim);
    } else if (name == "fp16") {
        for (int i = 0; i < dim; ++i) out[i] = from_half((uint16_t)(code[2 * i] | (code[2 * i + 1] << 8)));
    } else if (name == "int8") {
        float scale;
        std::memcpy(&scale, code, 4);
        for (int i = 0; i < dim; ++i) out[i] = (float)(int8_t)code[4 + i] * scale;
    } else {
        fail(EF_ERR_ARGUMENT, "codec " + name + ": Hamming codes are scored by similarity(), not decoded");
    }
    return out;
}

float Codec::similarity(const float* q, const uint8_t* code) const {
    if (hamming) {
        auto qc = encode(q);
        long h = 0;
        for (size_t i = 0; i < qc.size(); ++i) h += __builtin_popcount((unsigned)(qc[i] ^ code[i]));
        return (float)(1.0 - 2.0 * (double)h / bits);
    }
    check_finite(q, dim, "query");
    auto d = decode(code);
    double acc = 0;
    for (int i = 0; i < dim; ++i) acc += (double)q[i] * d[i];
    return (float)acc;
}

// n values +-1 from SHA-256 of "edgeface-simhash/<tag>/<k>" (codecs._fixed_signs)
static std::vector<float> fixed_signs(const std::string& tag, int n) {
    std::vector<uint8_t> stream;
    for (int k = 0; k < (n + 255) / 256; ++k) {
        std::string s = "edgeface-simhash/" + tag + "/" + std::to_string(k);
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char*)s.data(), s.size(), d);
        stream.insert(stream.end(), d, d + SHA256_DIGEST_LENGTH);
    }
    std::vector<float> out(n);
    for (int i = 0; i < n; ++i) out[i] = (stream[i / 8] >> (7 - i % 8)) & 1 ? 1.0f : -1.0f;
    return out;
}

static Codec build(const std::string& name, int dim) {
    if (!is_codec(name)) fail(EF_ERR_ARGUMENT, "unknown template codec '" + name + "'; choose one of ['binary', 'binary256', 'binary512', 'float32', 'fp16', 'int8']");
    if (dim <= 0 || dim > 65536) fail(EF_ERR_ARGUMENT, "codec " + name + ": dimension must be in 1..65536, got " + std::to_string(dim));
    Codec c;
    c.name = name;
    c.dim = dim;
    c.hamming = name.rfind("binary", 0) == 0;
    if (name == "binary") c.bits = dim;
    if (name == "binary256" || name == "binary512") {
        c.bits = name == "binary256" ? 256 : 512;
        int n = 1;
        while (n < dim) n <<= 1;
        float hs = (float)(1.0 / std::sqrt((double)n));
        int blocks = (c.bits + n - 1) / n;
        c.projection.assign((size_t)dim * c.bits, 0.0f);
        for (int k = 0; k < blocks; ++k) {
            auto s = fixed_signs("n" + std::to_string(n) + "/block" + std::to_string(k), n);
            for (int i = 0; i < dim; ++i)
                for (int j = 0; j < n && k * n + j < c.bits; ++j) {
                    float hv = (__builtin_popcount((unsigned)(i & j)) & 1) ? -hs : hs;
                    c.projection[(size_t)i * c.bits + k * n + j] = s[i] * hv;
                }
        }
    }
    return c;
}

const Codec& get_codec(const std::string& name, int dim) {
    static std::mutex mu;
    static std::map<std::pair<std::string, int>, std::unique_ptr<Codec>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto key = std::make_pair(name, dim);
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, std::make_unique<Codec>(build(name, dim))).first;
    return *it->second;
}

}  // namespace ef
