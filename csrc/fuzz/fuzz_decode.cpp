// The decoder core as a fuzz target: any bytes in, a decoded image or a DecodeError out, never a
// crash, a sanitizer report, a hang or an unbounded allocation.
//
// - With clang's libFuzzer (cmake -DLOTC_FUZZ=ON, CXX=clang++): coverage-guided fuzzing under
//   ASan + UBSan, differential across the kernel tables (below). The custom mutator re-seals both CRC-32s after each mutation (where the header
//   size byte allows), so mutants reach the deep parsers and the range decoder instead of all
//   dying at the CRC check.
// - Built with -DLOTC_FUZZ_REPLAY (any compiler; cmake -DLOTC_SANITIZE=ON builds it as
//   lotc-fuzz-replay): a main() that runs the target over files and folders, e.g. the committed
//   corpus (csrc/fuzz/corpus), which the tests replay under g++'s ASan + UBSan.
#include "../core/lotc_decoder.h"
#include "../core/lotc_internal.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#ifndef LOTC_DEFAULT_TABLES
#define LOTC_DEFAULT_TABLES "laplace_tables.npy"
#endif

namespace {
// A cap the caller of a real decoder would set: keeps each run small so the fuzzer stays fast
// (what a file declaring more costs is the work-limit tests' business, not the fuzzer's).
constexpr uint64_t kMaxPixels = 1u << 20;

[[noreturn]] void disagree(const char* what, const std::string& table) {
    std::fprintf(stderr, "kernel table %s against scalar: %s\n", table.c_str(), what);
    std::abort();
}
}  // namespace

// Differential: every kernel table this build runs on this CPU against the scalar one (one thread,
// the reference formulas). They must refuse exactly the same inputs, decode identical latents and
// images within one 8-bit level (FORMAT §8); a disagreement aborts, so the fuzzer reports it.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const lotc::Tables tables = lotc::Tables::from_npy_file(LOTC_DEFAULT_TABLES);
    static const std::vector<std::string> kernels = lotc::available_kernels();
    auto run = [&](const std::string& table, int threads, lotc::Decoded& out) {
        try {
            out = lotc::decode(data, size, tables, threads, false, table, kMaxPixels);
            return true;
        } catch (const lotc::DecodeError&) {
        } catch (const lotc::LimitError&) {
        }
        return false;
    };
    lotc::Decoded want;
    const bool ok = run("scalar", 1, want);
    for (const std::string& table : kernels) {
        lotc::Decoded got;
        // Two threads: the pool's paths (an error thrown on a helper thread included).
        if (run(table, 2, got) != ok) disagree("accepted by one table and refused by another", table);
        if (!ok) continue;
        if (got.latents != want.latents) disagree("latents differ", table);
        if (got.rgb.size() != want.rgb.size()) disagree("image sizes differ", table);
        for (size_t i = 0; i < got.rgb.size(); ++i)
            if (std::abs(int(got.rgb[i]) - int(want.rgb[i])) > 1) disagree("image more than one level apart", table);
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
