// 5-point alignment, as edgeface.core.align: least-squares similarity onto the template and a bilinear
// inverse warp with a constant 0 border (OpenCV 5's warpAffine interpolates in floating point: a
// double-precision warp rounded to nearest is within 1 level of it).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "internal.hpp"

namespace ef {

static const double ARCFACE_112[10] = {38.2946, 51.6963, 73.5318, 51.5014, 56.0252, 71.7366, 41.5493, 92.3655, 70.7299, 92.2041};
static const double SPHEREFACE_112x96[10] = {30.2946, 51.6963, 65.5318, 51.5014, 48.0252, 71.7366, 33.5493, 92.3655, 62.7299, 92.2041};
// edgeface.core.align.DLIB_150: dlib's 150x150 face chip in YuNet's 5 points
static const double DLIB_150[10] = {48.433, 45.8269, 101.2684, 45.5386, 75.6365, 77.6155, 52.5396, 101.6837, 98.0997, 101.3311};

Landmarks check_landmarks(const double* values, size_t n, const char* what) {
    if (values == nullptr || n != 10) {
        std::ostringstream s;
        s << what << ": expected 5 (x, y) points, got " << (values == nullptr ? 0 : n) << " values";
        fail(EF_ERR_BAD_LANDMARKS, s.str());
    }
    Landmarks lm;
    for (size_t i = 0; i < 10; ++i) {
        if (!std::isfinite(values[i])) fail(EF_ERR_BAD_LANDMARKS, std::string(what) + ": contains NaN or infinite coordinates");
        lm[i] = values[i];
    }
    return lm;
}

void check_app_landmarks(const Landmarks& lm, int width, int height) {
    for (int k = 0; k < 2; ++k) {
        double x = lm[2 * k], y = lm[2 * k + 1];
        if (x < 0 || y < 0 || x >= width || y >= height) {
            char buf[256];
            snprintf(buf, sizeof buf, "eye landmarks [[%.1f, %.1f], [%.1f, %.1f]] lie outside the %dx%d image", lm[0], lm[1], lm[2], lm[3],
                     width, height);
            fail(EF_ERR_BAD_LANDMARKS, buf);
        }
    }
    if (std::hypot(lm[2] - lm[0], lm[3] - lm[1]) < 2.0) fail(EF_ERR_BAD_LANDMARKS, "the two eye landmarks coincide: not a face");
}

std::array<double, 10> template_landmarks(const std::string& name, int height, int width) {
    const double* pts;
    int th, tw;
    if (name == "arcface_112x112") {
        pts = ARCFACE_112, th = 112, tw = 112;
    } else if (name == "sphereface_112x96") {
        pts = SPHEREFACE_112x96, th = 112, tw = 96;
    } else if (name == "dlib_150x150") {
        pts = DLIB_150, th = 150, tw = 150;
    } else {
        fail(EF_ERR_BUNDLE, "unknown alignment template '" + name + "'; known: ['arcface_112x112', 'dlib_150x150', 'sphereface_112x96']");
    }
    std::array<double, 10> out;
    for (int i = 0; i < 5; ++i) {
        out[2 * i] = (height == th && width == tw) ? pts[2 * i] : pts[2 * i] * ((double)width / tw);
        out[2 * i + 1] = (height == th && width == tw) ? pts[2 * i + 1] : pts[2 * i + 1] * ((double)height / th);
    }
    return out;
}

// The least-squares similarity x' = a x - b y + tx, y' = b x + a y + ty: Umeyama's solution without
// reflection in closed form for 2-D points.
std::array<double, 6> similarity_transform(const std::array<double, 10>& src, const std::array<double, 10>& dst) {
    double msx = 0, msy = 0, mdx = 0, mdy = 0;
    for (int i = 0; i < 5; ++i) msx += src[2 * i], msy += src[2 * i + 1], mdx += dst[2 * i], mdy += dst[2 * i + 1];
    msx /= 5, msy /= 5, mdx /= 5, mdy /= 5;
    double var = 0, sdot = 0, scross = 0;
    for (int i = 0; i < 5; ++i) {
        double sx = src[2 * i] - msx, sy = src[2 * i + 1] - msy, dx = dst[2 * i] - mdx, dy = dst[2 * i + 1] - mdy;
        var += sx * sx + sy * sy;
        sdot += sx * dx + sy * dy;
        scross += sx * dy - sy * dx;
    }
    if (var / 5 < 1e-12) fail(EF_ERR_BAD_LANDMARKS, "cannot align: similarity_transform: source points are all at the same place");
    double a = sdot / var, b = scross / var;
    return {a, -b, mdx - (a * msx - b * msy), b, a, mdy - (b * msx + a * msy)};
}

std::vector<uint8_t> warp_affine(const uint8_t* rgb, int width, int height, const std::array<double, 6>& m, int out_h, int out_w) {
    double det = m[0] * m[4] - m[1] * m[3];
    if (!(std::fabs(det) > 1e-300) || !std::isfinite(det)) fail(EF_ERR_BAD_LANDMARKS, "cannot align: singular transform");
    // inverse of [[m0 m1 m2][m3 m4 m5]]
    double i0 = m[4] / det, i1 = -m[1] / det, i3 = -m[3] / det, i4 = m[0] / det;
    double i2 = -(i0 * m[2] + i1 * m[5]), i5 = -(i3 * m[2] + i4 * m[5]);
    std::vector<uint8_t> out((size_t)out_h * out_w * 3, 0);
    for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
            double sx = i0 * x + i1 * y + i2, sy = i3 * x + i4 * y + i5;
            if (!(sx > -1.0 && sy > -1.0 && sx < width && sy < height)) continue;  // all four neighbours outside: border 0
            double fx0 = std::floor(sx), fy0 = std::floor(sy);
            int x0 = (int)fx0, y0 = (int)fy0;
            double fx = sx - fx0, fy = sy - fy0;
            double acc[3] = {0, 0, 0};
            const double wts[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
            const int xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
            for (int k = 0; k < 4; ++k) {
                if (xs[k] < 0 || ys[k] < 0 || xs[k] >= width || ys[k] >= height) continue;
                const uint8_t* p = rgb + ((size_t)ys[k] * width + xs[k]) * 3;
                for (int c = 0; c < 3; ++c) acc[c] += wts[k] * p[c];
            }
            uint8_t* o = out.data() + ((size_t)y * out_w + x) * 3;
            for (int c = 0; c < 3; ++c) o[c] = (uint8_t)std::min(255.0, std::max(0.0, std::nearbyint(acc[c])));
        }
    }
    return out;
}

std::vector<uint8_t> align_face(const uint8_t* rgb, int width, int height, const Landmarks& lm, const std::string& templ, int out_h,
                                int out_w) {
    auto dst = template_landmarks(templ, out_h, out_w);
    std::array<double, 10> src;
    for (int i = 0; i < 10; ++i) src[i] = lm[i];
    return warp_affine(rgb, width, height, similarity_transform(src, dst), out_h, out_w);
}

// edgeface.core.align.landmark_residual (docs/runtime.md "Landmark geometry"): the RMS residual of the
// least-squares similarity fit of the landmarks onto the template, in template inter-ocular
// distances; float64, the sums in index order as specified there.
double landmark_residual(const Landmarks& L, const std::array<double, 10>& T) {
    double mlx = 0, mly = 0, mtx = 0, mty = 0;
    for (int i = 0; i < 5; ++i) mlx += L[2 * i], mly += L[2 * i + 1], mtx += T[2 * i], mty += T[2 * i + 1];
    mlx /= 5, mly /= 5, mtx /= 5, mty /= 5;
    double spp = 0, sqq = 0, cre = 0, cim = 0;
    for (int i = 0; i < 5; ++i) {
        double px = L[2 * i] - mlx, py = L[2 * i + 1] - mly, qx = T[2 * i] - mtx, qy = T[2 * i + 1] - mty;
        spp += px * px + py * py, sqq += qx * qx + qy * qy;
        cre += px * qx + py * qy, cim += px * qy - py * qx;
    }
    double iod = std::hypot(T[2] - T[0], T[3] - T[1]);
    double sse = spp == 0.0 ? sqq : sqq - (cre * cre + cim * cim) / spp;
    return std::sqrt(std::max(sse, 0.0) / 5.0) / iod;
}

Pose estimate_pose(const Landmarks& p) {
    const double PI = 3.14159265358979323846;
    double rex = p[0], rey = p[1], lex = p[2], ley = p[3], nx = p[4], ny = p[5];
    double evx = lex - rex, evy = ley - rey;
    double roll = std::atan2(evy, evx) * 180.0 / PI;
    double emx = (rex + lex) / 2, emy = (rey + ley) / 2, mmx = (p[6] + p[8]) / 2, mmy = (p[7] + p[9]) / 2;
    double r = -roll * PI / 180.0;
    double c = std::cos(r), s = std::sin(r);
    auto rot = [&](double x, double y, double& ox, double& oy) { ox = c * x - s * y, oy = s * x + c * y; };
    double ex, ey, nxr, nyr, mx, my;
    rot(emx, emy, ex, ey);
    rot(nx, ny, nxr, nyr);
    rot(mmx, mmy, mx, my);
    double iod = std::max(std::hypot(evx, evy), 1e-6);
    double yaw_ratio = (nxr - (ex + mx) / 2) / iod;
    double yaw = std::asin(std::min(1.0, std::max(-1.0, 2.0 * yaw_ratio))) * 180.0 / PI;
    double face_h = std::max(my - ey, 1e-6);
    double pitch_ratio = (nyr - ey) / face_h;
    double pitch = std::asin(std::min(1.0, std::max(-1.0, 2.0 * (pitch_ratio - 0.55)))) * 180.0 / PI;
    return {roll, yaw, pitch, iod};
}

}  // namespace ef
