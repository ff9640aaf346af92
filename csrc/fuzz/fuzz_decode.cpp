// The decoder core as a fuzz target: any bytes in, a decoded image or a DecodeError out, never a
// crash, a sanitizer report, a hang or an unbounded allocation.
//
// - With clang's libFuzzer (cmake -DLOTC_FUZZ=ON, CXX=clang++): coverage-guided fuzzing under
//   ASan + UBSan, differential across the kernel tables (below). The custom mutator (at the end)
//   knows the file layout: it mutates one section and rebuilds sizes and both CRC-32s, so mutants
//   reach the deep parsers and the range decoder instead of all dying at the size or CRC checks.
// - Built with -DLOTC_FUZZ_REPLAY (any compiler; cmake -DLOTC_SANITIZE=ON builds it as
//   lotc-fuzz-replay): a main() that runs the target over files and folders, e.g. the committed
//   corpus (csrc/fuzz/corpus), which the tests replay under g++'s ASan + UBSan.
#include "../core/lotc_decoder.h"
#include "../core/lotc_internal.h"

#include <algorithm>
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

namespace {

void put_u32(uint8_t* at, uint32_t v) {
    for (int i = 0; i < 4; ++i) at[i] = uint8_t(v >> (8 * i));
}

void write_varint(std::vector<uint8_t>& out, uint64_t v) {
    do {
        out.push_back(uint8_t((v & 0x7F) | (v > 0x7F ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}

// A file cut at the FORMAT §1/§2 layout: the header's bytes up to its three section sizes, and the
// three sections (networks, mask, latents). False when the header does not parse that far.
struct Split {
    std::vector<uint8_t> prefix;                 // magic .. the config record (header_size byte included)
    std::vector<uint8_t> section[3];             // networks, mask, latents
};

bool split(const uint8_t* data, size_t size, Split& out) {
    if (size < 10 || data[5] < 10 || size_t(data[5]) > size) return false;
    const size_t header = data[5];
    using lotc::detail::read_varint;  // the decoder's own reader: throws DecodeError past `header`
    try {
        size_t pos = 6;
        for (int field = 0; field < 2; ++field) read_varint(data, header, pos, 5);  // width, height
        pos += 2;                                                                // channels, bit depth
        read_varint(data, header, pos, 10);                                      // seed
        if (data[4] < lotc::detail::kCompactConfigVersion) {
            for (const auto& f : lotc::config_fields())
                if (f.since <= data[4]) read_varint(data, header, pos, 5);
        } else {  // the bit set, then a varint per bit (bits beyond the fields too: the decoder refuses them)
            const uint64_t present = read_varint(data, header, pos, 5);
            for (int bit = 0; bit < 64; ++bit)
                if (present >> bit & 1) read_varint(data, header, pos, 5);
        }
        out.prefix.assign(data, data + pos);
        size_t at = header;
        for (auto& section : out.section) {
            const size_t n = size_t(std::min<uint64_t>(read_varint(data, header, pos, 5), size - std::min(size, at)));
            section.assign(data + at, data + at + n);
            at += n;
        }
        return true;
    } catch (const lotc::DecodeError&) {
        return false;
    }
}

// Writes the file back: fresh section sizes, header_size and both CRCs. 0 if it exceeds max_size.
size_t join(const Split& in, uint8_t* data, size_t max_size) {
    std::vector<uint8_t> file = in.prefix;
    for (const auto& sec : in.section) write_varint(file, sec.size());
    if (file.size() + 4 > 255) return 0;
    file[5] = uint8_t(file.size() + 4);
    const size_t header = file.size() + 4;
    file.resize(header);
    put_u32(file.data() + header - 4, lotc::detail::crc32(file.data(), header - 4));
    for (const auto& sec : in.section) file.insert(file.end(), sec.begin(), sec.end());
    file.resize(file.size() + 4);
    put_u32(file.data() + file.size() - 4, lotc::detail::crc32(file.data() + header, file.size() - 4 - header));
    if (file.size() > max_size) return 0;
    std::memcpy(data, file.data(), file.size());
    return file.size();
}

}  // namespace

// Structure-aware: most of the time one section is mutated on its own (its size may change) and
// the file is rebuilt around it with fresh section sizes, header size and CRCs, so mutants get past
// the size and CRC checks into the section parsers, the mask coder and the range decoder; otherwise
// (or when the header does not parse) the whole file is mutated and both CRCs re-sealed.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
    Split parts;
    if (seed % 4 != 0 && split(data, size, parts) && !parts.section[(seed / 4) % 3].empty()) {
        std::vector<uint8_t>& sec = parts.section[(seed / 4) % 3];
        const size_t old = sec.size();
        sec.resize(old + (max_size > size ? max_size - size : 0));
        sec.resize(LLVMFuzzerMutate(sec.data(), old, sec.size()));
        if (const size_t n = join(parts, data, max_size)) return n;
    }
    size = LLVMFuzzerMutate(data, size, max_size);
    const size_t header = size > 5 ? data[5] : 0;
    if (header >= 10 && header + 4 <= size) {
        put_u32(data + header - 4, lotc::detail::crc32(data, header - 4));
        put_u32(data + size - 4, lotc::detail::crc32(data + header, size - 4 - header));
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
