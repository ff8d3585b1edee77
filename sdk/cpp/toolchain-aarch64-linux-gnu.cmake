# Cross-compile the C++ core for 64-bit ARM Linux (Raspberry Pi OS 64-bit, Jetson, an ARM server) with
# Debian's g++-aarch64-linux-gnu. scripts/sdk_aarch64.sh sets EF_AARCH64_DEPS (the arm64 SQLite, OpenSSL,
# nlohmann-json and stb packages unpacked into a folder) and passes the aarch64 ONNX Runtime library of
# the onnxruntime wheel; nothing of the host's x86 libraries is searched.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(EF_AARCH64_DEPS "$ENV{EF_AARCH64_DEPS}" CACHE PATH "arm64 -dev packages unpacked (dpkg -x) into one folder")
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu "${EF_AARCH64_DEPS}" "${EF_AARCH64_DEPS}/usr")
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The tests run under qemu-aarch64 (binfmt_misc) with QEMU_LD_PREFIX=/usr/aarch64-linux-gnu.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L /usr/aarch64-linux-gnu)
