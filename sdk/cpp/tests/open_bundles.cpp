// Opens each bundle directory given and prints one JSON line per bundle: what ef_bundle_open said
// (status kind, the refusal rule ef_last_bundle_kind) and, when it opened, the gallery fingerprint of its
// model card. tests/test_sdk_cpp.py compares these with Python's load_bundle on tests/sdk_bundle_cases.py.
//   edgeface_open_bundles DIR...
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "edgeface.h"

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        ef_bundle* b = nullptr;
        ef_status st = ef_bundle_open(argv[i], 1, &b);
        nlohmann::json out = {{"dir", argv[i]}, {"status", ef_status_kind(st)}, {"bundle_kind", ef_last_bundle_kind()}};
        if (st == EF_OK) {
            char fp[17] = {0};
            ef_bundle_fingerprint(b, fp, sizeof fp);
            out["fingerprint"] = fp;
        } else {
            out["error"] = ef_last_error();
        }
        ef_bundle_close(b);
        std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";  // a message may quote raw bytes
    }
    return 0;
}
