// Embedding through the ONNX Runtime C API, as edgeface.runtime.backends.OnnxRuntimeBackend +
// Bundle.raw_output / Bundle.embed.
#include <onnxruntime/onnxruntime_c_api.h>

#include <cmath>
#include <mutex>

#include "internal.hpp"

namespace ef {

static const OrtApi* api() {
    static const OrtApi* a = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (a == nullptr) fail(EF_ERR_RUNTIME, "the ONNX Runtime library does not provide API version " + std::to_string(ORT_API_VERSION));
    return a;
}

static void check(OrtStatus* st, const char* what) {
    if (st == nullptr) return;
    std::string msg = std::string(what) + ": " + api()->GetErrorMessage(st);
    api()->ReleaseStatus(st);
    fail(EF_ERR_RUNTIME, "ONNX Runtime " + msg);
}

static OrtEnv* env() {
    static std::once_flag once;
    static OrtEnv* e = nullptr;
    std::call_once(once, [] { check(api()->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "edgeface", &e), "CreateEnv"); });
    if (e == nullptr) fail(EF_ERR_RUNTIME, "ONNX Runtime environment could not be created");
    return e;
}

struct Runner {
    OrtSession* session = nullptr;
    std::string input_name, output_name;
    ONNXTensorElementDataType input_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    bool normalization_in_graph = true, nchw = false;
    std::string color_order = "RGB";
    float mean[3] = {127.5f, 127.5f, 127.5f}, stdv[3] = {128.f, 128.f, 128.f};
    int h = 0, w = 0, dim = 0;
    ~Runner() {
        if (session) api()->ReleaseSession(session);
    }
};

std::shared_ptr<Runner> make_runner(const std::string& model_path, const json& input, const Card& card, int threads) {
    auto r = std::make_shared<Runner>();
    OrtSessionOptions* opts = nullptr;
    check(api()->CreateSessionOptions(&opts), "CreateSessionOptions");
    std::unique_ptr<OrtSessionOptions, void (*)(OrtSessionOptions*)> guard(opts, [](OrtSessionOptions* o) { api()->ReleaseSessionOptions(o); });
    if (threads > 0) {
        check(api()->SetIntraOpNumThreads(opts, threads), "SetIntraOpNumThreads");
        check(api()->SetInterOpNumThreads(opts, 1), "SetInterOpNumThreads");
    }
    check(api()->SetSessionLogSeverityLevel(opts, 3), "SetSessionLogSeverityLevel");
    check(api()->CreateSession(env(), model_path.c_str(), opts, &r->session), "CreateSession");
    OrtAllocator* alloc = nullptr;
    check(api()->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
    char* name = nullptr;
    check(api()->SessionGetInputName(r->session, 0, alloc, &name), "SessionGetInputName");
    r->input_name = name;
    check(api()->AllocatorFree(alloc, name), "AllocatorFree");
    check(api()->SessionGetOutputName(r->session, 0, alloc, &name), "SessionGetOutputName");
    r->output_name = name;
    check(api()->AllocatorFree(alloc, name), "AllocatorFree");
    OrtTypeInfo* ti = nullptr;
    check(api()->SessionGetInputTypeInfo(r->session, 0, &ti), "SessionGetInputTypeInfo");
    const OrtTensorTypeAndShapeInfo* tsi = nullptr;
    OrtStatus* st = api()->CastTypeInfoToTensorInfo(ti, &tsi);
    if (st == nullptr && tsi != nullptr) st = api()->GetTensorElementType(tsi, &r->input_type);
    api()->ReleaseTypeInfo(ti);
    check(st, "input type");
    // Python: uint8 when the input type says so, float32 otherwise
    if (r->input_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) r->input_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    r->normalization_in_graph = input.value("normalization_in_graph", true);
    r->nchw = input.value("layout", std::string("NHWC")) == "NCHW";
    r->color_order = card.dict.value("color_order", std::string("RGB"));
    for (int c = 0; c < 3; ++c) {
        r->mean[c] = card.dict["mean"][c].get<float>();
        r->stdv[c] = card.dict["std"][c].get<float>();
    }
    r->h = card.height, r->w = card.width, r->dim = card.dim;
    return r;
}

bool runner_takes_uint8(const Runner& r) { return r.input_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8; }

std::vector<float> run_model(Runner& r, const uint8_t* crops, size_t n) {
    const size_t per = (size_t)r.h * r.w * 3;
    std::vector<float> out;
    out.reserve(n * r.dim);
    OrtMemoryInfo* mem = nullptr;
    check(api()->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "CreateCpuMemoryInfo");
    std::unique_ptr<OrtMemoryInfo, void (*)(OrtMemoryInfo*)> mem_guard(mem, [](OrtMemoryInfo* m) { api()->ReleaseMemoryInfo(m); });
    const size_t BATCH = 64;  // Bundle.batch_size
    for (size_t start = 0; start < n; start += BATCH) {
        size_t b = std::min(BATCH, n - start);
        const uint8_t* src = crops + start * per;
        std::vector<float> fbuf;
        std::vector<uint8_t> ubuf;
        int64_t shape[4] = {(int64_t)b, r.h, r.w, 3};
        void* data;
        size_t bytes;
        if (r.normalization_in_graph) {
            if (r.input_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) {
                ubuf.assign(src, src + b * per);
                data = ubuf.data(), bytes = ubuf.size();
            } else {
                fbuf.assign(src, src + b * per);
                data = fbuf.data(), bytes = fbuf.size() * 4;
            }
        } else {
            // preprocess.normalize: colour order, (x - mean) / std, layout
            fbuf.resize(b * per);
            for (size_t i = 0; i < b; ++i)
                for (int y = 0; y < r.h; ++y)
                    for (int x = 0; x < r.w; ++x) {
                        const uint8_t* p = src + i * per + ((size_t)y * r.w + x) * 3;
                        float v[3] = {(float)p[0], (float)p[1], (float)p[2]};
                        if (r.color_order == "BGR") std::swap(v[0], v[2]);
                        if (r.color_order == "GRAY") v[0] = v[1] = v[2] = v[0] * 0.299f + v[1] * 0.587f + v[2] * 0.114f;
                        for (int c = 0; c < 3; ++c) {
                            float q = (v[c] - r.mean[c]) / r.stdv[c];
                            size_t idx = r.nchw ? i * per + (size_t)c * r.h * r.w + (size_t)y * r.w + x : i * per + ((size_t)y * r.w + x) * 3 + c;
                            fbuf[idx] = q;
                        }
                    }
            if (r.nchw) shape[1] = 3, shape[2] = r.h, shape[3] = r.w;
            if (r.input_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) {
                ubuf.resize(fbuf.size());
                for (size_t i = 0; i < fbuf.size(); ++i) ubuf[i] = (uint8_t)fbuf[i];
                data = ubuf.data(), bytes = ubuf.size();
            } else {
                data = fbuf.data(), bytes = fbuf.size() * 4;
            }
        }
        OrtValue* in = nullptr;
        check(api()->CreateTensorWithDataAsOrtValue(mem, data, bytes, shape, 4, r.input_type, &in), "CreateTensor");
        std::unique_ptr<OrtValue, void (*)(OrtValue*)> in_guard(in, [](OrtValue* v) { api()->ReleaseValue(v); });
        const char* in_names[] = {r.input_name.c_str()};
        const char* out_names[] = {r.output_name.c_str()};
        OrtValue* res = nullptr;
        check(api()->Run(r.session, nullptr, in_names, &in, 1, out_names, 1, &res), "Run");
        std::unique_ptr<OrtValue, void (*)(OrtValue*)> out_guard(res, [](OrtValue* v) { api()->ReleaseValue(v); });
        OrtTensorTypeAndShapeInfo* info = nullptr;
        check(api()->GetTensorTypeAndShape(res, &info), "GetTensorTypeAndShape");
        size_t count = 0;
        ONNXTensorElementDataType ot;
        OrtStatus* st = api()->GetTensorShapeElementCount(info, &count);
        if (st == nullptr) st = api()->GetTensorElementType(info, &ot);
        api()->ReleaseTensorTypeAndShapeInfo(info);
        check(st, "output shape");
        if (ot != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) fail(EF_ERR_RUNTIME, "model output is not float32");
        if (count != b * (size_t)r.dim)
            fail(EF_ERR_BUNDLE, "model produced " + std::to_string(count / std::max<size_t>(b, 1)) + "-d embeddings, edgeface.json says " + std::to_string(r.dim));
        float* p = nullptr;
        check(api()->GetTensorMutableData(res, (void**)&p), "GetTensorMutableData");
        out.insert(out.end(), p, p + count);
    }
    return out;
}

std::vector<float> Bundle::embed(const uint8_t* crops, size_t n) const {
    auto e = run_model(*runner, crops, n);
    int d = card.dim;
    for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (int k = 0; k < d; ++k) s += (double)e[i * d + k] * e[i * d + k];
        float norm = std::max((float)std::sqrt(s), 1e-10f);
        for (int k = 0; k < d; ++k) e[i * d + k] /= norm;
    }
    return e;
}

}  // namespace ef
