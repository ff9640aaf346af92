// lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--kernels K | --scalar] [--latents P] | --info IN.lotc:
// a client of the public C API (include/lotc.h) only, as dav1d's tools use only dav1d.h. No Python, no
// data file: the frequency tables are inside the library.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../include/lotc.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {
// The image's buffer, written once by the decoder: advised for transparent huge pages where Linux
// offers them (one fault per 2 MiB instead of per 4 KiB page: 0.3 ms of a 30 ms decode at 768x512
// on a VM), not zero-filled (every byte is written).
struct ImageBuffer {
    static constexpr size_t kHuge = size_t(2) << 20;
    size_t size;
    uint8_t* data;
    explicit ImageBuffer(size_t n) : size(n), data(nullptr) {
        const size_t rounded = (n + kHuge - 1) / kHuge * kHuge;
        void* p = nullptr;
        if (posix_memalign(&p, kHuge, rounded ? rounded : kHuge) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
        data = static_cast<uint8_t*>(p);
    }
    ~ImageBuffer() { std::free(data); }
    ImageBuffer(const ImageBuffer&) = delete;
    ImageBuffer& operator=(const ImageBuffer&) = delete;
};

const char* kUsage =
    "usage: lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--kernels K | --scalar] [--latents P]\n"
    "       lotterycodec-dec --info IN.lotc\n"
    "  OUT.ppm      binary PPM (P6); - writes it to standard output\n"
    "  --threads N  decode on N threads (default: every core); the output is identical for any N\n"
    "  --time       print per-stage seconds (parse, entropy, upsampling, modulation, synthesis;\n"
    "               all = file read to image)\n"
    "  --kernels K  auto (default: the fastest this CPU runs), scalar, avx2, avx512 or neon\n"
    "  --scalar     the scalar kernels (same as --kernels scalar)\n"
    "  --latents P  also write the decoded latents to P (int32 little-endian, grid after grid)\n"
    "  --max-pixels N  refuse a file of more than N pixels before decoding it\n"
    "  --info       print what the header says (size, complexity) without decoding\n";

// Writes the pieces to PATH whole or not at all: into a temporary file beside it, renamed over
// PATH only once every byte is written, so a full disk or a file-size limit leaves the previous
// file in place and no partial one.
void write_atomically(const std::string& path, std::initializer_list<std::pair<const char*, size_t>> pieces) {
    const std::string tmp = path + ".part";
    {
        std::ofstream o(tmp, std::ios::binary);
        for (const auto& [data, size] : pieces) o.write(data, std::streamsize(size));
        o.flush();
        if (!o) {
            o.close();
            std::remove(tmp.c_str());
            throw std::runtime_error("cannot write " + path + " (disk full, a size limit, or no permission)");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    }
}

void write_to(std::ostream& o, const std::string& name, std::initializer_list<std::pair<const char*, size_t>> pieces) {
    for (const auto& [data, size] : pieces) o.write(data, std::streamsize(size));
    o.flush();
    if (!o) throw std::runtime_error("cannot write " + name);
}

// A regular file (or a new one) is replaced atomically; through a symbolic link, the file it
// points to is, and the link stays. Anything else that exists (/dev/null, a FIFO, a terminal) is
// written in place: renaming over it would put a regular file where the device or pipe was.
void write_output(const std::string& path, std::initializer_list<std::pair<const char*, size_t>> pieces) {
    if (path == "-") return write_to(std::cout, "to standard output", pieces);
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status target = fs::status(path, ec);  // follows links
    if (fs::exists(target) && !fs::is_regular_file(target)) {
        std::ofstream o(path, std::ios::binary);
        return write_to(o, path, pieces);
    }
    if (fs::is_symlink(fs::symlink_status(path, ec))) {
        const fs::path resolved = fs::weakly_canonical(path, ec);
        if (!ec) return write_atomically(resolved.string(), pieces);
    }
    write_atomically(path, pieces);
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void check(lotc_status status, const char* message) {
    if (status != LOTC_OK) throw std::runtime_error(message);
}
}  // namespace

int main(int argc, char** argv) {
    // A file-size limit (SIGXFSZ) must fail the write with an error message, not kill the process.
    std::signal(SIGXFSZ, SIG_IGN);
    std::string in, out, latents_path, kernels = "auto";
    bool timing = false, info_only = false;
    lotc_options options;
    lotc_options_default(&options);
    options.threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--time")) timing = true;
        else if (!std::strcmp(argv[i], "--info")) info_only = true;
        else if (!std::strcmp(argv[i], "--scalar")) kernels = "scalar";
        else if (!std::strcmp(argv[i], "--kernels") && i + 1 < argc) kernels = argv[++i];
        else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) { std::printf("%s", kUsage); return 0; }
        else if (!std::strcmp(argv[i], "--latents") && i + 1 < argc) latents_path = argv[++i];
        else if (!std::strcmp(argv[i], "--max-pixels") && i + 1 < argc) {
            char* end = nullptr;
            const unsigned long long n = std::strtoull(argv[++i], &end, 10);
            if (*end || !n) { std::fprintf(stderr, "lotterycodec-dec: --max-pixels takes a positive count\n"); return 2; }
            options.max_pixels = n;
        }
        else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
            char* end = nullptr;
            long n = std::strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) { std::fprintf(stderr, "lotterycodec-dec: --threads takes 1..1024\n"); return 2; }
            options.threads = int(n);
        }
        else if (in.empty()) in = argv[i];
        else if (out.empty() && (argv[i][0] != '-' || !std::strcmp(argv[i], "-"))) out = argv[i];
        else { std::fprintf(stderr, "lotterycodec-dec: unexpected argument %s\n%s", argv[i], kUsage); return 2; }
    }
    if (in.empty() || (out.empty() && !info_only)) {
        std::fprintf(stderr, "%s", kUsage);
        return 2;
    }
    options.kernels = kernels.c_str();
    char message[512];
    try {
        if (info_only) {
            const std::vector<uint8_t> data = read_file(in);
            lotc_info info;
            check(lotc_probe(data.data(), data.size(), &info, message, sizeof message), message);
            std::printf("%s: LotteryCodec format %d, %dx%d, %d latent grids (%llu latents), %.1f MACs/pixel, "
                        "kept ratio %.3f\n", in.c_str(), info.format_version, info.width, info.height, info.n_grids,
                        (unsigned long long)info.latent_count, info.macs_per_pixel, info.kept_ratio);
            return 0;
        }
        // Timed scope as Cool-chic's `all`: from reading the file to the image in memory.
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<uint8_t> data = read_file(in);
        lotc_info info;
        check(lotc_probe(data.data(), data.size(), &info, message, sizeof message), message);
        const size_t row = size_t(info.width) * 3;
        ImageBuffer rgb(row * size_t(info.height));
        lotc_stats stats;
        check(lotc_decode(data.data(), data.size(), &options, rgb.data, rgb.size, row, nullptr, &stats, message,
                          sizeof message), message);
        const double all = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::string header = "P6\n" + std::to_string(info.width) + " " + std::to_string(info.height) + "\n255\n";
        write_output(out, {{header.data(), header.size()}, {reinterpret_cast<const char*>(rgb.data), rgb.size}});
        if (!latents_path.empty()) {
            std::vector<int8_t> latents(size_t(info.latent_count));
            check(lotc_decode_latents(data.data(), data.size(), &options, latents.data(), latents.size(), message,
                                      sizeof message), message);
            std::vector<char> bytes;
            for (int8_t v : latents) {
                const uint32_t u = uint32_t(int32_t(v));
                for (int s = 0; s < 32; s += 8) bytes.push_back(char(u >> s));
            }
            write_atomically(latents_path, {{bytes.data(), bytes.size()}});
        }
        if (timing)  // on stderr when the image goes to stdout
            std::fprintf(out == "-" ? stderr : stdout,
                         "time: parse %.6f entropy %.6f upsampling %.6f modulation %.6f synthesis %.6f all %.6f "
                         "(kernels %s, threads %d)\n",
                         stats.parse, stats.entropy, stats.upsampling, stats.modulation, stats.synthesis, all,
                         stats.kernels, options.threads);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lotterycodec-dec: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
