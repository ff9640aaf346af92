# Cross-compiling the standalone decoder for 32-bit ARM Linux (ARMv7-A with NEON and VFPv4, e.g.
# Cortex-A7/A9/A15 boards) with Debian's g++-arm-linux-gnueabihf:
#   cmake -S csrc -B build-armv7 -DCMAKE_TOOLCHAIN_FILE=csrc/cmake/arm-linux-gnueabihf.cmake
#   cmake --build build-armv7
# Linked statically so the binary runs on any armhf Linux, and under qemu-arm here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
# NEON with fused multiply-add (VFPv4): the NEON kernel table's formulas need vfma.
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
