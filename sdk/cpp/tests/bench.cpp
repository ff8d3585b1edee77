// Milliseconds per face for each stage of the core and its peak memory, on the shared vectors' faces.
//   edgeface_bench BUNDLE VECTORS GALLERY REPEATS   -> one JSON line
// Stages: align (5 landmarks -> crop), quality (measures + both gate modes, no embedding), embed (one
// crop through ONNX Runtime, 1 thread), match (exact search of one query in GALLERY).
// Built from the core's sources (not the shared library) so the stages can be timed one by one.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "internal.hpp"

using clk = std::chrono::steady_clock;

static std::vector<uint8_t> read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: edgeface_bench BUNDLE VECTORS GALLERY REPEATS\n");
        return 2;
    }
    try {
        std::string vdir = argv[2];
        int repeats = std::atoi(argv[4]);
        auto t_open = clk::now();
        auto bundle = ef::open_bundle(argv[1], 1);
        double open_ms = std::chrono::duration<double, std::milli>(clk::now() - t_open).count();
        std::ifstream jf(vdir + "/vectors.json");
        ef::json doc = ef::json::parse(jf);
        ef::Gallery gallery(argv[3], &bundle->card, "float32", true);
        const auto& card = bundle->card;
        double t_align = 0, t_quality = 0, t_embed = 0, t_match = 0;
        long n = 0;
        for (int r = 0; r < repeats; ++r)
            for (const auto& f : doc["faces"]) {
                auto px = read_bytes(vdir + "/" + f["pixels"].get<std::string>());
                std::vector<double> lmv;
                for (auto& p : f["landmarks"]) lmv.push_back(p[0]), lmv.push_back(p[1]);
                auto lm = ef::check_landmarks(lmv.data(), lmv.size());
                auto t0 = clk::now();
                auto crop = ef::align_face(px.data(), f["width"], f["height"], lm, card.templ, card.height, card.width);
                auto t1 = clk::now();
                auto m = ef::measure(crop.data(), card.height, card.width, lm, 0, false, 0, false);
                auto c1 = ef::assess(m, bundle->gate.verify);
                auto c2 = ef::assess(m, bundle->gate.enroll);
                auto t2 = clk::now();
                auto e = bundle->embed(crop.data(), 1);
                auto t3 = clk::now();
                auto hits = gallery.search(e.data(), 5);
                auto t4 = clk::now();
                if (hits.empty() || c1.empty() || c2.empty()) return 1;
                t_align += std::chrono::duration<double, std::milli>(t1 - t0).count();
                t_quality += std::chrono::duration<double, std::milli>(t2 - t1).count();
                t_embed += std::chrono::duration<double, std::milli>(t3 - t2).count();
                t_match += std::chrono::duration<double, std::milli>(t4 - t3).count();
                ++n;
            }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        std::printf("{\"faces\": %ld, \"align_ms\": %.4f, \"quality_ms\": %.4f, \"embed_ms\": %.4f, \"match_ms\": %.4f, \"open_bundle_ms\": %.1f, \"peak_rss_mb\": %.1f, \"gallery_size\": %zu}\n",
                    n, t_align / n, t_quality / n, t_embed / n, t_match / n, open_ms, ru.ru_maxrss / 1024.0, gallery.count());
    } catch (const ef::Error& e) {
        std::fprintf(stderr, "%s: %s\n", ef_status_kind(e.status), e.message.c_str());
        return 1;
    }
    return 0;
}
