# Cross-compiling the standalone decoder for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu:
#   cmake -S csrc -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=csrc/cmake/aarch64-linux-gnu.cmake
#   cmake --build build-arm64
# Linked statically so the binary runs on any aarch64 Linux, and under qemu-aarch64 here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
