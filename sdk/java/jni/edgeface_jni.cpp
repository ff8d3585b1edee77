// JNI bridge of com.edgeface.sdk.FaceRecognizer over the C ABI (edgeface.h). Handles travel as
// jlong; every failure becomes a com.edgeface.sdk.EdgefaceException(kind, message).
#include <jni.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "edgeface.h"

namespace {

// NewStringUTF takes modified UTF-8: a message may quote a file name or manifest text with any
// bytes, and invalid input aborts the VM under -Xcheck:jni. Keep well-formed 1-3 byte sequences
// (no NUL), replace everything else with '?'.
std::string modified_utf8(const char* s) {
    std::string out;
    const unsigned char* p = (const unsigned char*)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : 0;
        bool ok = len > 0;
        for (int k = 1; ok && k < len; ++k) ok = (p[k] & 0xc0) == 0x80;
        if (ok && len == 2) ok = *p >= 0xc2;                                    // no overlong forms
        if (ok && len == 3) ok = !(*p == 0xe0 && p[1] < 0xa0);
        if (ok) out.append((const char*)p, len), p += len;
        else out += '?', ++p;
    }
    return out;
}

void throw_ef(JNIEnv* env, ef_status st) {
    jclass cls = env->FindClass("com/edgeface/sdk/EdgefaceException");
    if (cls == nullptr) return;  // NoClassDefFoundError already pending
    jmethodID ctor = env->GetMethodID(cls, "<init>", "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V");
    if (ctor == nullptr) return;
    jstring kind = env->NewStringUTF(ef_status_kind(st));
    jstring msg = env->NewStringUTF(modified_utf8(ef_last_error()).c_str());
    jstring bundle_kind = env->NewStringUTF(ef_last_bundle_kind());
    jobject ex = env->NewObject(cls, ctor, kind, msg, bundle_kind);
    if (ex != nullptr) env->Throw((jthrowable)ex);
}

bool ok(JNIEnv* env, ef_status st) {
    if (st == EF_OK) return true;
    throw_ef(env, st);
    return false;
}

struct Utf {  // a Java string as UTF-8 for the duration of a call (NULL stays NULL)
    JNIEnv* env;
    jstring s;
    const char* c;
    Utf(JNIEnv* e, jstring str) : env(e), s(str), c(str ? e->GetStringUTFChars(str, nullptr) : nullptr) {}
    ~Utf() {
        if (c) env->ReleaseStringUTFChars(s, c);
    }
};

std::vector<double> doubles(JNIEnv* env, jdoubleArray a) {
    std::vector<double> v;
    if (a == nullptr) return v;
    v.resize(env->GetArrayLength(a));
    if (!v.empty()) env->GetDoubleArrayRegion(a, 0, (jsize)v.size(), v.data());
    return v;
}

std::vector<uint8_t> bytes(JNIEnv* env, jbyteArray a) {
    std::vector<uint8_t> v;
    if (a == nullptr) return v;
    v.resize(env->GetArrayLength(a));
    if (!v.empty()) env->GetByteArrayRegion(a, 0, (jsize)v.size(), (jbyte*)v.data());
    return v;
}

template <class T>
T* ptr(jlong h) {
    return reinterpret_cast<T*>(static_cast<intptr_t>(h));
}
jlong handle(void* p) { return static_cast<jlong>(reinterpret_cast<intptr_t>(p)); }

jobjectArray matches(JNIEnv* env, const ef_match* m, size_t n, jfloatArray* scores) {
    jobjectArray names = env->NewObjectArray((jsize)n, env->FindClass("java/lang/String"), nullptr);
    *scores = env->NewFloatArray((jsize)n);
    for (size_t i = 0; i < n; ++i) {
        env->SetObjectArrayElement(names, (jsize)i, env->NewStringUTF(m[i].name));
        env->SetFloatArrayRegion(*scores, (jsize)i, 1, &m[i].score);
    }
    return names;
}

}  // namespace

#define JNI_FN(name) JNIEXPORT JNICALL Java_com_edgeface_sdk_Native_##name

extern "C" {

jlong JNI_FN(openBundle)(JNIEnv* env, jclass, jstring dir, jint threads) {
    Utf d(env, dir);
    ef_bundle* b = nullptr;
    return ok(env, ef_bundle_open(d.c, threads, &b)) ? handle(b) : 0;
}

void JNI_FN(closeBundle)(JNIEnv*, jclass, jlong b) { ef_bundle_close(ptr<ef_bundle>(b)); }

jfloat JNI_FN(threshold)(JNIEnv* env, jclass, jlong b, jstring codec, jstring far) {
    Utf c(env, codec), f(env, far);
    float t = 0;
    ok(env, ef_bundle_threshold(ptr<ef_bundle>(b), c.c, f.c, &t));
    return t;
}

jlong JNI_FN(openGallery)(JNIEnv* env, jclass, jstring path, jlong b, jstring codec, jboolean readonly) {
    Utf p(env, path), c(env, codec);
    ef_gallery* g = nullptr;
    return ok(env, ef_gallery_open(p.c, ptr<ef_bundle>(b), c.c, readonly ? 1 : 0, &g)) ? handle(g) : 0;
}

jfloat JNI_FN(galleryThreshold)(JNIEnv* env, jclass, jlong g, jlong b, jstring far) {
    Utf f(env, far);
    float t = 0;
    ok(env, ef_gallery_threshold(ptr<ef_gallery>(g), ptr<ef_bundle>(b), f.c, &t));
    return t;
}

jboolean JNI_FN(galleryContains)(JNIEnv* env, jclass, jlong g, jstring name) {
    Utf n(env, name);
    int yes = 0;
    ok(env, ef_gallery_contains(ptr<ef_gallery>(g), n.c, &yes));
    return yes != 0;
}

void JNI_FN(closeGallery)(JNIEnv*, jclass, jlong g) { ef_gallery_close(ptr<ef_gallery>(g)); }

jlong JNI_FN(analyzeRgb)(JNIEnv* env, jclass, jlong b, jbyteArray rgb, jint w, jint h, jdoubleArray lm) {
    auto px = bytes(env, rgb);
    auto l = doubles(env, lm);
    if (rgb != nullptr && (long long)px.size() != (long long)w * h * 3 && w > 0 && h > 0) {
        jclass cls = env->FindClass("com/edgeface/sdk/EdgefaceException");
        jmethodID ctor = env->GetMethodID(cls, "<init>", "(Ljava/lang/String;Ljava/lang/String;)V");
        env->Throw((jthrowable)env->NewObject(cls, ctor, env->NewStringUTF("invalid"),
                                              env->NewStringUTF("rgb must hold width * height * 3 bytes")));
        return 0;
    }
    ef_face* f = nullptr;
    return ok(env, ef_analyze_rgb(ptr<ef_bundle>(b), rgb ? px.data() : nullptr, w, h, l.data(), l.size(), -1, &f)) ? handle(f) : 0;
}

jlong JNI_FN(analyzeEncoded)(JNIEnv* env, jclass, jlong b, jbyteArray data, jdoubleArray lm) {
    auto by = bytes(env, data);
    auto l = doubles(env, lm);
    ef_face* f = nullptr;
    return ok(env, ef_analyze_encoded(ptr<ef_bundle>(b), by.data(), by.size(), l.data(), l.size(), -1, &f)) ? handle(f) : 0;
}

void JNI_FN(freeFace)(JNIEnv*, jclass, jlong f) { ef_face_free(ptr<ef_face>(f)); }

jfloatArray JNI_FN(faceEmbedding)(JNIEnv* env, jclass, jlong f) {
    size_t d = 0;
    const float* e = ef_face_embedding(ptr<ef_face>(f), &d);
    jfloatArray out = env->NewFloatArray((jsize)d);
    if (d) env->SetFloatArrayRegion(out, 0, (jsize)d, e);
    return out;
}

jboolean JNI_FN(facePassed)(JNIEnv*, jclass, jlong f, jint mode) { return ef_face_passed(ptr<ef_face>(f), (ef_mode)mode) != 0; }
jstring JNI_FN(faceReasons)(JNIEnv* env, jclass, jlong f, jint mode) { return env->NewStringUTF(ef_face_reasons(ptr<ef_face>(f), (ef_mode)mode)); }
jstring JNI_FN(faceFailed)(JNIEnv* env, jclass, jlong f, jint mode) { return env->NewStringUTF(ef_face_failed(ptr<ef_face>(f), (ef_mode)mode)); }
jdouble JNI_FN(faceWeight)(JNIEnv*, jclass, jlong f) { return ef_face_weight(ptr<ef_face>(f)); }

// -> [template quality, used_0, used_1, ...]
jdoubleArray JNI_FN(enroll)(JNIEnv* env, jclass, jlong g, jlong b, jstring name, jlongArray faces) {
    Utf n(env, name);
    std::vector<jlong> hs(faces ? env->GetArrayLength(faces) : 0);
    if (!hs.empty()) env->GetLongArrayRegion(faces, 0, (jsize)hs.size(), hs.data());
    std::vector<const ef_face*> fs;
    for (jlong h : hs) fs.push_back(ptr<ef_face>(h));
    std::vector<int> used(fs.size());
    double q = 0;
    if (!ok(env, ef_enroll(ptr<ef_gallery>(g), ptr<ef_bundle>(b), n.c, fs.data(), fs.size(), used.data(), &q))) return nullptr;
    std::vector<double> out{q};
    for (int u : used) out.push_back(u);
    jdoubleArray arr = env->NewDoubleArray((jsize)out.size());
    env->SetDoubleArrayRegion(arr, 0, (jsize)out.size(), out.data());
    return arr;
}

// -> [match (0/1), similarity, threshold]
jfloatArray JNI_FN(verify)(JNIEnv* env, jclass, jlong g, jlong b, jlong f, jstring name, jstring far) {
    Utf n(env, name), fa(env, far);
    ef_decision d{};
    if (!ok(env, ef_verify(ptr<ef_gallery>(g), ptr<ef_bundle>(b), ptr<ef_face>(f), n.c, fa.c, &d))) return nullptr;
    float out[3] = {(float)d.match, d.similarity, d.threshold};
    jfloatArray arr = env->NewFloatArray(3);
    env->SetFloatArrayRegion(arr, 0, 3, out);
    return arr;
}

// -> {String name, float[] {score}, String[] candidate names, float[] candidate scores}
jobjectArray JNI_FN(identify)(JNIEnv* env, jclass, jlong g, jlong b, jlong f, jint top_k, jstring far) {
    Utf fa(env, far);
    if (top_k > 10000) top_k = 10000;  // top_k < 1: ef_identify refuses it (argument)
    std::vector<ef_match> cands((size_t)std::max<jint>(top_k, 0) + 1);
    size_t n = cands.size();
    const char* name = nullptr;
    float score = 0;
    if (!ok(env, ef_identify(ptr<ef_gallery>(g), ptr<ef_bundle>(b), ptr<ef_face>(f), top_k, fa.c, &name, &score, cands.data(), &n))) return nullptr;
    jobjectArray out = env->NewObjectArray(4, env->FindClass("java/lang/Object"), nullptr);
    env->SetObjectArrayElement(out, 0, env->NewStringUTF(name));
    jfloatArray s = env->NewFloatArray(1);
    env->SetFloatArrayRegion(s, 0, 1, &score);
    env->SetObjectArrayElement(out, 1, s);
    jfloatArray scores;
    jobjectArray names = matches(env, cands.data(), n, &scores);
    env->SetObjectArrayElement(out, 2, names);
    env->SetObjectArrayElement(out, 3, scores);
    return out;
}

// -> [passed, faces, pairs, decision mismatches, cosine min, cosine mean, required min cosine]
jdoubleArray JNI_FN(checkConformance)(JNIEnv* env, jclass, jlong b) {
    ef_conformance c{};
    if (!ok(env, edgeface_check_conformance(ptr<ef_bundle>(b), &c))) return nullptr;
    double out[7] = {(double)c.passed, (double)c.faces, (double)c.pairs, (double)c.decision_mismatches, c.cosine_min, c.cosine_mean, c.required_min_cosine};
    jdoubleArray arr = env->NewDoubleArray(7);
    env->SetDoubleArrayRegion(arr, 0, 7, out);
    return arr;
}

}  // extern "C"
