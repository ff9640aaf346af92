// lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--kernels K | --scalar] [--tables P] [--latents P]: no
// Python at build or run time.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/lotc_decoder.h"

#ifndef LOTC_DEFAULT_TABLES
#define LOTC_DEFAULT_TABLES "laplace_tables.npy"
#endif

namespace {
const char* kUsage =
    "usage: lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--kernels K | --scalar] [--tables PATH]\n"
    "  --threads N  decode on N threads (default: every core); the output is identical for any N\n"
    "  --time       print per-stage seconds (parse, entropy, ups, mod, syn; all = file read to image)\n"
    "  --kernels K  auto (default: the fastest this CPU runs), scalar, avx2, avx512 or neon\n"
    "  --scalar     the scalar kernels (same as --kernels scalar)\n"
    "  --tables P   the frequency tables (.npy) if not at the built-in path\n"
    "  --latents P  also write the decoded latents to P (int32 little-endian, grid after grid)\n";

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
}  // namespace

int main(int argc, char** argv) {
    // A file-size limit (SIGXFSZ) must fail the write with an error message, not kill the process.
    std::signal(SIGXFSZ, SIG_IGN);
    std::string in, out, latents_path, tables_path = LOTC_DEFAULT_TABLES;
    bool timing = false;
    std::string kernels = "auto";
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--time")) timing = true;
        else if (!std::strcmp(argv[i], "--scalar")) kernels = "scalar";
        else if (!std::strcmp(argv[i], "--kernels") && i + 1 < argc) kernels = argv[++i];
        else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) { std::printf("%s", kUsage); return 0; }
        else if (!std::strcmp(argv[i], "--tables") && i + 1 < argc) tables_path = argv[++i];
        else if (!std::strcmp(argv[i], "--latents") && i + 1 < argc) latents_path = argv[++i];
        else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
            char* end = nullptr;
            long n = std::strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) { std::fprintf(stderr, "lotterycodec-dec: --threads takes 1..1024\n"); return 2; }
            threads = int(n);
        }
        else if (in.empty()) in = argv[i];
        else if (out.empty()) out = argv[i];
        else { std::fprintf(stderr, "lotterycodec-dec: unexpected argument %s\n%s", argv[i], kUsage); return 2; }
    }
    if (in.empty() || out.empty()) {
        std::fprintf(stderr, "%s", kUsage);
        return 2;
    }
    try {
        lotc::Tables tables = lotc::Tables::from_npy_file(tables_path);
        // Timed scope as Cool-chic's `all`: from reading the file to the image in memory.
        auto t0 = std::chrono::steady_clock::now();
        std::ifstream f(in, std::ios::binary);
        if (!f) throw std::runtime_error("cannot open " + in);
        std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        lotc::Decoded d = lotc::decode(data.data(), data.size(), tables, threads, false, kernels);
        double all = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::string header = "P6\n" + std::to_string(d.width) + " " + std::to_string(d.height) + "\n255\n";
        write_atomically(out, {{header.data(), header.size()},
                               {reinterpret_cast<const char*>(d.rgb.data()), d.rgb.size()}});
        if (!latents_path.empty()) {
            std::vector<char> bytes;
            for (const auto& grid : d.latents)
                for (int32_t v : grid) {
                    const uint32_t u = uint32_t(v);
                    for (int s = 0; s < 32; s += 8) bytes.push_back(char(u >> s));
                }
            write_atomically(latents_path, {{bytes.data(), bytes.size()}});
        }
        if (timing)
            std::printf("time: parse %.6f entropy %.6f ups %.6f mod %.6f syn %.6f all %.6f (kernels %s, threads %d)\n",
                        d.t_parse, d.t_entropy, d.t_upsampling, d.t_modulation, d.t_synthesis, all, d.kernels,
                        threads);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lotterycodec-dec: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
