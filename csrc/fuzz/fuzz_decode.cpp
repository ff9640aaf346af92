// The decoder core as a fuzz target: any bytes in, a decoded image or a DecodeError out, never a
// crash, a sanitizer report, a hang or an unbounded allocation.
//
// - With clang's libFuzzer (cmake -DLOTC_FUZZ=ON, CXX=clang++): coverage-guided fuzzing under
//   ASan + UBSan. The custom mutator re-seals both CRC-32s after each mutation (where the header
//   size byte allows), so mutants reach the deep parsers and the range decoder instead of all
//   dying at the CRC check.
// - Built with -DLOTC_FUZZ_REPLAY (any compiler; cmake -DLOTC_SANITIZE=ON builds it as
//   lotc-fuzz-replay): a main() that runs the target over files and folders, e.g. the committed
//   corpus (csrc/fuzz/corpus), which the tests replay under g++'s ASan + UBSan.
#include "../core/lotc_decoder.h"
#include "../core/lotc_internal.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#ifndef LOTC_DEFAULT_TABLES
#define LOTC_DEFAULT_TABLES "laplace_tables.npy"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const lotc::Tables tables = lotc::Tables::from_npy_file(LOTC_DEFAULT_TABLES);
    // The fastest table and the scalar one: both must refuse the same inputs cleanly. Two threads,
    // so the pool's error path (an exception on a helper thread) is exercised too.
    for (const char* kernels : {"auto", "scalar"}) {
        try {
            lotc::decode(data, size, tables, 2, false, kernels);
        } catch (const lotc::DecodeError&) {
        }
    }
    return 0;
}

#ifndef LOTC_FUZZ_REPLAY
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int) {
    size = LLVMFuzzerMutate(data, size, max_size);
    const size_t header = size > 5 ? data[5] : 0;
    if (header >= 10 && header + 4 <= size) {
        auto put = [&](size_t at, uint32_t v) {
            for (int i = 0; i < 4; ++i) data[at + i] = uint8_t(v >> (8 * i));
        };
        put(header - 4, lotc::detail::crc32(data, header - 4));
        put(size - 4, lotc::detail::crc32(data + header, size - 4 - header));
    }
    return size;
}
#else
int main(int argc, char** argv) {
    size_t runs = 0;
    auto run_file = [&](const std::filesystem::path& path) {
        std::ifstream f(path, std::ios::binary);
        const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
        ++runs;
    };
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path p(argv[i]);
        if (std::filesystem::is_directory(p)) {
            for (const auto& entry : std::filesystem::directory_iterator(p))
                if (entry.is_regular_file()) run_file(entry.path());
        } else {
            run_file(p);
        }
    }
    std::printf("replayed %zu inputs\n", runs);
    return 0;
}
#endif
