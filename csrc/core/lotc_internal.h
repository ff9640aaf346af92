// Internal to the decoder core (not installed): the format's constants, byte reading and CRCs,
// the config record. Shared by every stage's source file.
#pragma once

#include "lotc_decoder.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lotc::detail {

constexpr int kResidualMax = 127;
constexpr int kSymbols = 2 * kResidualMax + 1;
constexpr int kMuSteps = 8, kScales = 48, kScaleStepsPerOctave = 4, kLog2ScaleMin = -4;
constexpr int kPrecision = 24;
constexpr int64_t kArmParamMax = 1 << 15;
constexpr int64_t kNetValueMax = 1 << 20;
// Format versions read (docs/FORMAT.md 1): 3 adds the config field arm_parents, 4 the compact config record.
constexpr int kVersionMin = 2, kVersionMax = 4;
// From this version the config record is a bit set of the fields that differ from their defaults, then
// those fields' varints (versions 2 and 3 list every field they carry).
constexpr int kCompactConfigVersion = 4;
// Networks section: a uniform table symbol per tensor; escapes in base-64 digits with a continuation bit.
constexpr int kNetScaleSymbols = 64, kEscapeDigitBits = 6, kEscapeSymbols = 2 << kEscapeDigitBits,
              kMaxEscapeDigits = 4;
constexpr int kMaxSide = 16384;
constexpr int64_t kMaxPixels = int64_t(1) << 26;
// A latent costs more than 1/2839 bit and a stream ends where its words do (RangeDecoder::finish),
// so a substream of L bits holds at most L * 2839 latents (docs/FORMAT.md 6.5).
constexpr int64_t kMaxSymbolsPerBit = 2839;
constexpr uint32_t kTablesCrc = 0x44fc33aa;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] inline void fail(const std::string& msg) { throw DecodeError(msg); }

// zlib's CRC-32, eight bytes per step (slice-by-8: eight 256-entry tables, t[k][b] the CRC of
// byte b followed by k zero bytes): the 392 KB frequency table is checked once per process and
// was 0.85 ms of a 33 ms 768x512 decode byte by byte, ~4x less this way. Endian-independent: the
// eight bytes are read one by one.
inline uint32_t crc32(const uint8_t* p, size_t n) {
    static const std::array<std::array<uint32_t, 256>, 8> t = [] {
        std::array<std::array<uint32_t, 256>, 8> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (int k = 1; k < 8; ++k)
            for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        const uint32_t lo = c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    }
    for (; n; ++p, --n) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

inline uint64_t read_le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// A LEB128 varint of at most max_bytes bytes within p[0, n); max_bytes <= 10, and a 10-byte one
// must fit 64 bits.
inline uint64_t read_varint(const uint8_t* p, size_t n, size_t& at, int max_bytes) {
    uint64_t v = 0;
    for (int i = 0; i < max_bytes; ++i) {
        if (at >= n) fail("varint truncated");
        const uint8_t b = p[at++];
        if (i == 9 && (b & 0x7E)) fail("varint above 2^64 - 1");
        v |= uint64_t(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) return v;
    }
    fail("varint too long");
}

inline std::vector<uint32_t> section_words(const uint8_t* p, size_t n) {
    if (n % 4) fail("section is not a whole number of 32-bit words");
    std::vector<uint32_t> w(n / 4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = uint32_t(read_le(p + 4 * i, 4));
    return w;
}

// ------------------------------------------------------------------------------ config

struct Config {
    int64_t n_grids, latent_bound, stripe_height, shared_max_pixels, arm_context, arm_layers, arm_width,
        arm_frac_bits, ups_kernel_size, ups_step_exp, mod_width, mod_out, mod_weight_step_exp,
        mod_bias_step_exp, synth_width0, synth_width1, synth_width2, synth_mode, kept_weights, arm_parents,
        arm_residual, arm_stabiliser;
    int64_t arm_inputs() const { return arm_context + arm_parents; }
};

struct FieldSpec {
    FieldRange range;
    int64_t Config::*member;
};

inline const std::vector<FieldSpec>& field_specs() {
    static const std::vector<FieldSpec> specs = {
        {{"n_grids", 1, 8, 7}, &Config::n_grids},
        {{"latent_bound", 1, 64, 64}, &Config::latent_bound},
        {{"stripe_height", 1, 65535, 64}, &Config::stripe_height},
        {{"shared_max_pixels", 0, kMaxPixels, 4096}, &Config::shared_max_pixels},
        {{"arm_context", 0, 32, 24}, &Config::arm_context},
        {{"arm_layers", 0, 4, 2}, &Config::arm_layers},
        {{"arm_width", 1, 64, 24}, &Config::arm_width},
        {{"arm_frac_bits", 1, 12, 8}, &Config::arm_frac_bits},
        {{"ups_kernel_size", 4, 12, 8}, &Config::ups_kernel_size},
        {{"ups_step_exp", 0, 24, 8}, &Config::ups_step_exp},
        {{"mod_width", 1, 64, 48}, &Config::mod_width},
        {{"mod_out", 1, 16, 3}, &Config::mod_out},
        {{"mod_weight_step_exp", 0, 24, 8}, &Config::mod_weight_step_exp},
        {{"mod_bias_step_exp", 0, 24, 8}, &Config::mod_bias_step_exp},
        {{"synth_width0", 1, 64, 32}, &Config::synth_width0},
        {{"synth_width1", 1, 64, 24}, &Config::synth_width1},
        {{"synth_width2", 1, 64, 16}, &Config::synth_width2},
        {{"synth_mode", 0, 1, 0}, &Config::synth_mode},
        {{"kept_weights", 0, int64_t(1) << 20, 1206}, &Config::kept_weights},
        {{"arm_parents", 0, 9, 0, 3}, &Config::arm_parents},
        {{"arm_residual", 0, 1, 0, 4}, &Config::arm_residual},
        {{"arm_stabiliser", 0, 1, 0, 4}, &Config::arm_stabiliser},
    };
    return specs;
}

struct LayerShape {
    int fan_in, fan_out;
};

inline std::vector<LayerShape> synth_in_out(const Config& c) {
    int mo = int(c.mod_out), mw = int(c.mod_width);
    int w0 = int(c.synth_width0), w1 = int(c.synth_width1), w2 = int(c.synth_width2);
    return {{2, w0}, {w0 + 2 * mo, w1}, {w1 + 3 * mo, w2}, {w2 + 3 * mo + mw, 3}};
}

inline std::vector<std::pair<int, int>> grid_shapes(const Config& c, int height, int width) {
    std::vector<std::pair<int, int>> s;
    for (int l = 0; l < c.n_grids; ++l) s.push_back({(height + (1 << l) - 1) >> l, (width + (1 << l) - 1) >> l});
    return s;
}

}  // namespace lotc::detail
