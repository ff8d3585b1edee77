package com.edgeface.sdk;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The Java front on the shared vectors (sdk/VECTORS.md): a plain main, no test framework.
 *   java -Djava.library.path=BUILD -cp BUILD/java:BUILD/java-test com.edgeface.sdk.VectorsTest BUNDLE VECTORS SCRATCH
 * Prints a JSON summary; exit status 1 on any mismatch.
 */
public final class VectorsTest {
    static final List<String> bad = new ArrayList<>();
    static int checks = 0;

    static void expect(boolean ok, String what) {
        checks++;
        if (!ok) bad.add(what);
    }

    public static void main(String[] args) throws Exception {
        Path bundle = Paths.get(args[0]), vdir = Paths.get(args[1]), scratch = Paths.get(args[2]);
        Files.createDirectories(scratch);
        Map<String, Object> doc = obj(Json.parse(new String(Files.readAllBytes(vdir.resolve("vectors.json")), "UTF-8")));
        Map<String, Object> tol = obj(doc.get("tolerances"));
        double minCos = num(tol.get("embedding_min_cosine")), margin = num(tol.get("decision_margin"));
        double jpegCos = num(tol.get("jpeg_embedding_min_cosine"));
        // From a JPEG file, a face whose measure lies within jpeg_gate_margin of a verify-gate threshold may get another
        // verdict from this decoder: the decisions hanging on it may then differ in rejected / not rejected.
        Set<String> border = new HashSet<>();
        Map<String, Object> qthr = obj(obj(doc.get("quality_thresholds")).get("verify"));
        Map<String, Object> gateMargin = tol.containsKey("jpeg_gate_margin") ? obj(tol.get("jpeg_gate_margin")) : new LinkedHashMap<>();
        for (Object o : list(doc.get("faces"))) {
            Map<String, Object> f = obj(o);
            if (!"jpeg".equals(f.get("image_format"))) continue;
            Map<String, Object> meas = obj(f.get("measurements"));
            for (Map.Entry<String, Object> gm : gateMargin.entrySet()) {
                if (!(meas.get(gm.getKey()) instanceof Number)) continue;
                for (String side : new String[] {"min_", "max_"}) {
                    Object t = qthr.get(side + gm.getKey());
                    if (t instanceof Number && Math.abs(num(meas.get(gm.getKey())) - num(t)) <= num(gm.getValue())) border.add((String) f.get("id"));
                }
            }
        }
        boolean enrolDiffered = false;
        Map<String, Object> gal = null;
        for (Object g : list(doc.get("galleries"))) if ("float32".equals(obj(g).get("codec"))) gal = obj(g);

        Path galleryPath = scratch.resolve("java-gallery.db");
        Files.deleteIfExists(galleryPath);
        Map<String, FaceImage> images = new LinkedHashMap<>();
        double worstRaw = 1, worstFile = 1;
        try (FaceRecognizer rec = FaceRecognizer.open(bundle.toString(), galleryPath.toString(), "float32")) {
            expect(rec.checkConformance(), "conformance");
            for (Object o : list(doc.get("faces"))) {
                Map<String, Object> f = obj(o);
                String id = (String) f.get("id");
                double[] lm = landmarks(f.get("landmarks"));
                int w = (int) num(f.get("width")), h = (int) num(f.get("height"));
                float[] want = floats(Files.readAllBytes(vdir.resolve((String) f.get("embedding"))));
                // the main entry: raw RGB + landmarks
                float[] e = rec.embed(FaceImage.fromRgb(Files.readAllBytes(vdir.resolve((String) f.get("pixels"))), w, h, lm));
                double c = dot(e, want);
                worstRaw = Math.min(worstRaw, c);
                expect(c >= minCos, id + ": raw RGB embedding cosine " + c);
                // encoded file bytes
                FaceImage img = FaceImage.fromEncoded(Files.readAllBytes(vdir.resolve((String) f.get("image"))), lm);
                images.put(id, img);
                double cf = dot(rec.embed(img), want);
                worstFile = Math.min(worstFile, cf);
                expect(cf >= ("png".equals(f.get("image_format")) ? minCos : jpegCos), id + ": file embedding cosine " + cf);
            }
            // enrol as the Python float32 gallery did, then identify / verify every probe
            Map<String, Object> enrolment = obj(gal.get("enrolment"));
            for (Map.Entry<String, Object> en : enrolment.entrySet()) {
                Map<String, Object> want = obj(en.getValue());
                List<FaceImage> imgs = new ArrayList<>();
                List<Object> ids = list(want.get("images"));
                for (Object id : ids) imgs.add(images.get((String) id));
                FaceRecognizer.EnrollResult r = rec.enroll(en.getKey(), imgs);
                List<String> used = new ArrayList<>();
                for (int i : r.used) used.add((String) ids.get(i));
                boolean personBorder = false;
                for (Object id : ids) personBorder = personBorder || border.contains((String) id);
                boolean ok = r.enrolled == (Boolean) want.get("enrolled") && used.equals(list(want.get("used")))
                    && Math.abs(r.templateQuality - num(want.get("template_quality"))) <= 2e-3;
                if (!ok && personBorder) enrolDiffered = true;  // an image at the gate's border went the other way
                else expect(ok, "enrol " + en.getKey() + " used " + used + " quality " + r.templateQuality);
            }
            // identify(top_k < 1) is a programming error (Python: ValueError), never "unknown" for an enrolled person
            for (int badK : new int[] {0, -1, Integer.MIN_VALUE}) {
                String kind = "none";
                try {
                    rec.identify(images.get(obj(list(gal.get("searches")).get(0)).get("probe")), badK, "1e-3");
                } catch (EdgefaceException e) {
                    kind = e.kind();
                }
                expect(kind.equals("argument"), "identify(top_k=" + badK + "): " + kind + ", not argument");
            }
            for (Object so : list(gal.get("searches"))) {
                Map<String, Object> s = obj(so);
                String probe = (String) s.get("probe");
                for (Map.Entry<String, Object> ie : obj(s.get("identify")).entrySet()) {
                    Map<String, Object> want = obj(ie.getValue());
                    FaceRecognizer.IdentifyResult r = rec.identify(images.get(probe), 3, ie.getKey());
                    float thr = rec.threshold("cosine", ie.getKey());
                    boolean near = r.name != null && Math.abs(r.score - thr) <= margin;
                    boolean same = r.decision().equals(want.get("decision")) && (!"identified".equals(r.decision()) || r.name.equals(want.get("name")));
                    boolean flip = (border.contains(probe) && r.decision().equals("rejected") != "rejected".equals(want.get("decision"))) || enrolDiffered;
                    expect(same || near || flip, "identify " + probe + " at " + ie.getKey() + ": " + r.decision() + " " + r.name);
                    if (r.name == null) expect(r.rejection != null && r.rejection.detail.length() > 0, "identify " + probe + ": rejection without a reason");
                }
                for (Map.Entry<String, Object> ve : obj(s.get("verify")).entrySet()) {
                    Map<String, Object> want = obj(ve.getValue());
                    FaceRecognizer.VerifyResult r = rec.verify(images.get(probe), (String) want.get("name"), ve.getKey());
                    boolean near = !Float.isNaN(r.similarity) && Math.abs(r.similarity - r.threshold) <= margin;
                    boolean flip = (border.contains(probe) && r.decision.equals("rejected") != "rejected".equals(want.get("decision"))) || enrolDiffered;
                    expect(r.decision.equals(want.get("decision")) || near || flip, "verify " + probe + " at " + ve.getKey() + ": " + r.decision);
                }
            }
            // bad input: the same kinds as Python (no file = zero bytes here, "empty")
            for (Object eo : list(doc.get("errors"))) {
                Map<String, Object> e = obj(eo);
                Path p = vdir.resolve((String) e.get("image"));
                byte[] bytes = Files.exists(p) ? Files.readAllBytes(p) : new byte[0];
                String want = "missing".equals(e.get("kind")) ? "empty" : (String) e.get("kind");
                String got = "ok";
                try {
                    rec.embed(FaceImage.fromEncoded(bytes, landmarks(e.get("landmarks"))));
                } catch (EdgefaceException ex) {
                    got = ex.kind();
                    expect(ex.getMessage().length() > got.length() + 2, e.get("id") + ": exception without the core's message");
                }
                FaceRecognizer.IdentifyResult r = rec.identify(FaceImage.fromEncoded(bytes, landmarks(e.get("landmarks"))), 3, "1e-3");
                // embed() returns the embedding of a face the gate refuses; the gate's verdict is identify's rejection
                if (got.equals("ok") && r.rejection != null) got = r.rejection.reason;
                expect(got.equals(want), "error case " + e.get("id") + ": " + got + " vs " + want);
                expect(r.name == null && r.rejection != null && r.rejection.reason.equals(want), "error case " + e.get("id") + ": identify not rejected");
            }
            expect(kindOf(() -> rec.identify(images.get("f00"), 3, "1e-9")).equals("argument"), "unknown FAR is an argument error");
            expect(kindOf(() -> rec.verify(images.get("f00"), "nobody", "1e-3")).equals("not_enrolled"), "verify of a name not enrolled");
            expect(kindOf(() -> rec.embed(FaceImage.fromRgb(new byte[10], 100, 100, new double[10]))).equals("invalid"), "short RGB buffer");
            rec.close();
            rec.close();  // twice is harmless
            boolean closed = false;
            try {
                rec.embed(images.get("f00"));
            } catch (IllegalStateException ex) {
                closed = true;
            }
            expect(closed, "use after close is an IllegalStateException");
        }
        // the refused bundles of the vectors (bundles/<id>): the same kind and rule as Python, with the core's message
        for (Object o : list(doc.get("bundle_errors"))) {
            Map<String, Object> e = obj(o);
            EdgefaceException refused = null;
            try (FaceRecognizer r = FaceRecognizer.open(vdir.resolve((String) e.get("dir")).toString(), null, null)) {
            } catch (EdgefaceException ex) {
                refused = ex;
            }
            String got = refused == null ? "ok" : refused.kind() + "/" + refused.bundleKind();
            expect(got.equals(e.get("kind") + "/" + e.get("bundle_kind")) && refused.getMessage().length() > 40,
                   "bundle error " + e.get("id") + ": " + got + " vs " + e.get("kind") + "/" + e.get("bundle_kind"));
        }
        // a gallery file that is not a gallery
        Path junk = scratch.resolve("java-junk.db");
        Files.write(junk, "not a database".getBytes("UTF-8"));
        expect(kindOf(() -> FaceRecognizer.open(bundle.toString(), junk.toString(), "float32").close()).equals("gallery"), "junk gallery refused");

        for (String b : bad) System.err.println("MISMATCH " + b);
        System.out.println("{\"checks\": " + checks + ", \"mismatches\": " + bad.size() + ", \"raw_cosine_min\": " + worstRaw + ", \"file_cosine_min\": " + worstFile + "}");
        System.exit(bad.isEmpty() ? 0 : 1);
    }

    interface Call {
        void run() throws Exception;
    }

    static String kindOf(Call c) {
        try {
            c.run();
            return "ok";
        } catch (EdgefaceException e) {
            return e.kind();
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }

    static double dot(float[] a, float[] b) {
        if (a.length != b.length) return -2;
        double s = 0;
        for (int i = 0; i < a.length; i++) s += (double) a[i] * b[i];
        return s;
    }

    static float[] floats(byte[] b) {
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[b.length / 4];
        for (int i = 0; i < out.length; i++) out[i] = bb.getFloat();
        return out;
    }

    static double[] landmarks(Object o) {
        List<Double> flat = new ArrayList<>();
        flatten(o, flat);
        double[] out = new double[flat.size()];
        for (int i = 0; i < out.length; i++) out[i] = flat.get(i);
        return out;
    }

    static void flatten(Object o, List<Double> out) {
        if (o instanceof List) for (Object x : (List<?>) o) flatten(x, out);
        else if (o instanceof String) out.add(Double.NaN);  // "nan"
        else out.add(num(o));
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object o) {
        return (List<Object>) o;
    }

    static double num(Object o) {
        return ((Number) o).doubleValue();
    }

    /** A small JSON reader: objects (LinkedHashMap), arrays (ArrayList), Double, String, Boolean, null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        static Object parse(String s) {
            Json j = new Json(s);
            Object v = j.value();
            j.ws();
            if (j.i != s.length()) throw new IllegalArgumentException("trailing data at " + j.i);
            return v;
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private Object value() {
            ws();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    i++;  // ':'
                    m.put(k, value());
                    ws();
                    if (s.charAt(i++) == '}') return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i++) == ']') return l;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            return Double.parseDouble(s.substring(start, i));
        }

        private String string() {
            StringBuilder b = new StringBuilder();
            i++;  // opening quote
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': b.append('\n'); break;
                    case 't': b.append('\t'); break;
                    case 'r': b.append('\r'); break;
                    case 'b': b.append('\b'); break;
                    case 'f': b.append('\f'); break;
                    case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: b.append(e);
                }
            }
        }
    }
}
