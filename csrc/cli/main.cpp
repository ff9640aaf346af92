// lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--tables PATH]: no Python at build or run time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "../core/lotc_decoder.h"

#ifndef LOTC_DEFAULT_TABLES
#define LOTC_DEFAULT_TABLES "laplace_tables.npy"
#endif

int main(int argc, char** argv) {
    std::string in, out, tables_path = LOTC_DEFAULT_TABLES;
    bool timing = false;
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--time")) timing = true;
        else if (!std::strcmp(argv[i], "--tables") && i + 1 < argc) tables_path = argv[++i];
        else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (in.empty()) in = argv[i];
        else if (out.empty()) out = argv[i];
        else { std::fprintf(stderr, "lotterycodec-dec: unexpected argument %s\n", argv[i]); return 2; }
    }
    if (in.empty() || out.empty()) {
        std::fprintf(stderr, "usage: lotterycodec-dec IN.lotc OUT.ppm [--threads N] [--time] [--tables PATH]\n");
        return 2;
    }
    try {
        auto t0 = std::chrono::steady_clock::now();
        lotc::Tables tables = lotc::Tables::from_npy_file(tables_path);
        std::ifstream f(in, std::ios::binary);
        if (!f) throw std::runtime_error("cannot open " + in);
        std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        if (threads < 1) throw std::runtime_error("--threads must be at least 1");
        lotc::Decoded d = lotc::decode(data.data(), data.size(), tables, threads);
        double all = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::ofstream o(out, std::ios::binary);
        o << "P6\n" << d.width << " " << d.height << "\n255\n";
        o.write(reinterpret_cast<const char*>(d.rgb.data()), std::streamsize(d.rgb.size()));
        if (!o) throw std::runtime_error("cannot write " + out);
        if (timing)
            std::printf("time: parse %.6f entropy %.6f ups %.6f mod %.6f syn %.6f all %.6f\n", d.t_parse,
                        d.t_entropy, d.t_upsampling, d.t_modulation, d.t_synthesis, all);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lotterycodec-dec: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
