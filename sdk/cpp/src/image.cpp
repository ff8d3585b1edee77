// Image decoding (stb_image) with the typed failures of edgeface.core.imageio.read_image.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_FAILURE_STRINGS
#include <stb/stb_image.h>

#include "internal.hpp"

namespace ef {

static std::string dims(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

void check_pixels(const uint8_t* rgb, int width, int height, const std::string& source) {
    if (rgb == nullptr || width <= 0 || height <= 0) fail(EF_ERR_EMPTY, source + ": the image is empty");
    if ((long long)width * height > MAX_PIXELS)
        fail(EF_ERR_HUGE, source + ": " + dims(width, height) + " pixels is over the 200,000,000 pixel limit");
    if (std::min(width, height) < MIN_SIDE)
        fail(EF_ERR_TINY, source + ": " + dims(width, height) + " is smaller than 24 px on a side: too small to hold a usable face");
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& source, int min_side) {
    if (bytes == nullptr || size == 0) fail(EF_ERR_EMPTY, source + ": the file is empty (0 bytes)");
    if (size > (size_t)INT32_MAX) fail(EF_ERR_HUGE, source + ": over 2 GB of encoded data");
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_memory(bytes, (int)size, &w, &h, &c))
        fail(EF_ERR_UNREADABLE, source + ": not a decodable image (corrupt, truncated or another file type)");
    if ((long long)w * h > MAX_PIXELS) fail(EF_ERR_HUGE, source + ": " + dims(w, h) + " pixels is over the 200,000,000 pixel limit");
    unsigned char* px = stbi_load_from_memory(bytes, (int)size, &w, &h, &c, 3);
    if (px == nullptr) fail(EF_ERR_UNREADABLE, source + ": not a decodable image (corrupt, truncated or another file type)");
    Image img;
    img.width = w;
    img.height = h;
    img.rgb.assign(px, px + (size_t)w * h * 3);
    stbi_image_free(px);
    if (std::min(w, h) < min_side)
        fail(EF_ERR_TINY, source + ": " + dims(w, h) + " is smaller than 24 px on a side: too small to hold a usable face");
    return img;
}

Image read_image_file(const std::string& path, int min_side) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) fail(EF_ERR_MISSING, path + ": no such file");
    if (st.st_size == 0) fail(EF_ERR_EMPTY, path + ": the file is empty (0 bytes)");
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(EF_ERR_UNREADABLE, path + ": cannot be opened for reading");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return decode_image(bytes.data(), bytes.size(), path, min_side);
}

}  // namespace ef
