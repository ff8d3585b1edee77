package com.edgeface.sdk;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Milliseconds per face through the Java front (benchmarks/sdk_bench.py runs it):
 *   java -Djava.library.path=BUILD -cp BUILD/java:BUILD/java-test com.edgeface.sdk.Bench BUNDLE VECTORS GALLERY REPEATS
 * analyze_ms: FaceRecognizer.embed from raw RGB + landmarks (checks, align, embed of the crop and its
 * mirror, quality measures, both gate modes: the app's per-photo cost); identify_ms: identify in GALLERY
 * (analyze + exact search, top 5) for the faces the verify gate passes; match_ms = identify - analyze.
 * ONNX Runtime with 1 thread; peak RSS of the JVM process (VmHWM). Prints one JSON line.
 */
public final class Bench {
    public static void main(String[] args) throws Exception {
        Path vdir = Paths.get(args[1]);
        int repeats = Integer.parseInt(args[3]);
        Map<String, Object> doc = VectorsTest.obj(VectorsTest.Json.parse(new String(Files.readAllBytes(vdir.resolve("vectors.json")), "UTF-8")));
        long t0 = System.nanoTime();
        try (FaceRecognizer rec = FaceRecognizer.open(args[0], args[2], "float32", 1)) {
            double openMs = (System.nanoTime() - t0) / 1e6;
            List<FaceImage> faces = new ArrayList<>();
            List<Boolean> passes = new ArrayList<>();
            for (Object o : VectorsTest.list(doc.get("faces"))) {
                Map<String, Object> f = VectorsTest.obj(o);
                byte[] px = Files.readAllBytes(vdir.resolve((String) f.get("pixels")));
                faces.add(FaceImage.fromRgb(px, (int) VectorsTest.num(f.get("width")), (int) VectorsTest.num(f.get("height")),
                                            VectorsTest.landmarks(f.get("landmarks"))));
                passes.add("ok".equals(f.get("analyze_verify")));
            }
            rec.embed(faces.get(0));  // warm-up: ONNX Runtime's first run allocates
            rec.identify(faces.get(0), 5, "1e-3");
            double analyze = 0, identify = 0;
            int n = 0, m = 0;
            for (int r = 0; r < repeats; r++) {
                for (int i = 0; i < faces.size(); i++) {
                    long a = System.nanoTime();
                    rec.embed(faces.get(i));
                    long b = System.nanoTime();
                    analyze += b - a;
                    n++;
                    if (!passes.get(i)) continue;
                    long c = System.nanoTime();
                    FaceRecognizer.IdentifyResult res = rec.identify(faces.get(i), 5, "1e-3");
                    identify += System.nanoTime() - c;
                    if (res.candidates.isEmpty()) throw new IllegalStateException("identify found no candidate");
                    m++;
                }
            }
            double peak = 0;
            for (String line : Files.readAllLines(Paths.get("/proc/self/status")))
                if (line.startsWith("VmHWM:")) peak = Double.parseDouble(line.replaceAll("[^0-9]", "")) / 1024.0;
            double an = analyze / n / 1e6, id = identify / Math.max(m, 1) / 1e6;
            System.out.printf(java.util.Locale.ROOT,
                "{\"faces\": %d, \"analyze_ms\": %.4f, \"identify_ms\": %.4f, \"match_ms\": %.4f, \"open_bundle_ms\": %.1f, \"peak_rss_mb\": %.1f}%n",
                n, an, id, id - an, openMs, peak);
        }
    }
}
