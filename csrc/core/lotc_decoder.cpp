// Scalar, single-threaded reference port of decoder/reference.py (docs/FORMAT.md). Every size is
// checked against the bytes present before anything is allocated; errors throw DecodeError.
#include "lotc_decoder.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

namespace lotc {
namespace {

constexpr int kActFrac = 8;
constexpr int kResidualMax = 127;
constexpr int kSymbols = 2 * kResidualMax + 1;
constexpr int kMuSteps = 8, kScales = 48, kScaleStepsPerOctave = 4, kLog2ScaleMin = -4;
constexpr int kPrecision = 24;
constexpr int64_t kArmParamMax = 1 << 15;
constexpr int64_t kNetValueMax = 1 << 20;
constexpr int kHeaderSize = 63;
constexpr int kMaxSide = 16384;
constexpr int64_t kMaxPixels = int64_t(1) << 26;
constexpr int64_t kMaxSymbolsPerBit = 2839, kSymbolSlackBits = 128;
constexpr uint32_t kTablesCrc = 0x44fc33aa;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void fail(const std::string& msg) { throw DecodeError(msg); }

// body(i) for i in [0, n) on up to `threads` threads. Work items never share outputs, so the
// result is the same for every thread count. The first exception is rethrown after the join.
template <class F>
void parallel_for(int n, int threads, F&& body) {
    threads = std::max(1, std::min(threads, n));
    if (threads == 1) {
        for (int i = 0; i < n; ++i) body(i);
        return;
    }
    std::atomic<int> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&] {
        try {
            for (int i; (i = next++) < n;) body(i);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            next = n;
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

uint32_t crc32(const uint8_t* p, size_t n) {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint64_t read_le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// ------------------------------------------------------------------------------ config

struct Config {
    int64_t n_grids, latent_bound, stripe_height, shared_max_pixels, arm_context, arm_layers, arm_width,
        arm_frac_bits, ups_kernel_size, ups_step_exp, mod_width, mod_out, mod_weight_step_exp,
        mod_bias_step_exp, synth_width0, synth_width1, synth_width2, synth_mode, kept_weights;
};

struct FieldSpec {
    FieldRange range;
    int bytes;
    int64_t Config::*member;
};

const std::vector<FieldSpec>& field_specs() {
    static const std::vector<FieldSpec> specs = {
        {{"n_grids", 1, 8}, 1, &Config::n_grids},
        {{"latent_bound", 1, 64}, 1, &Config::latent_bound},
        {{"stripe_height", 1, 65535}, 2, &Config::stripe_height},
        {{"shared_max_pixels", 0, kMaxPixels}, 4, &Config::shared_max_pixels},
        {{"arm_context", 0, 32}, 1, &Config::arm_context},
        {{"arm_layers", 0, 4}, 1, &Config::arm_layers},
        {{"arm_width", 1, 64}, 1, &Config::arm_width},
        {{"arm_frac_bits", 1, 12}, 1, &Config::arm_frac_bits},
        {{"ups_kernel_size", 4, 12}, 1, &Config::ups_kernel_size},
        {{"ups_step_exp", 0, 24}, 1, &Config::ups_step_exp},
        {{"mod_width", 1, 64}, 1, &Config::mod_width},
        {{"mod_out", 1, 16}, 1, &Config::mod_out},
        {{"mod_weight_step_exp", 0, 24}, 1, &Config::mod_weight_step_exp},
        {{"mod_bias_step_exp", 0, 24}, 1, &Config::mod_bias_step_exp},
        {{"synth_width0", 1, 64}, 1, &Config::synth_width0},
        {{"synth_width1", 1, 64}, 1, &Config::synth_width1},
        {{"synth_width2", 1, 64}, 1, &Config::synth_width2},
        {{"synth_mode", 0, 0}, 1, &Config::synth_mode},
        {{"kept_weights", 0, int64_t(1) << 20}, 4, &Config::kept_weights},
    };
    return specs;
}

struct LayerShape {
    int fan_in, fan_out;
};

std::vector<LayerShape> synth_in_out(const Config& c) {
    int mo = int(c.mod_out), mw = int(c.mod_width);
    int w0 = int(c.synth_width0), w1 = int(c.synth_width1), w2 = int(c.synth_width2);
    return {{2, w0}, {w0 + 2 * mo, w1}, {w1 + 3 * mo, w2}, {w2 + 3 * mo + mw, 3}};
}

std::vector<std::pair<int, int>> grid_shapes(const Config& c, int height, int width) {
    std::vector<std::pair<int, int>> s;
    for (int l = 0; l < c.n_grids; ++l) s.push_back({(height + (1 << l) - 1) >> l, (width + (1 << l) - 1) >> l});
    return s;
}

// ------------------------------------------------------------------------------ bit reading

struct BitReader {
    const uint8_t* data;
    size_t size, pos = 0;  // pos in bits
    int64_t read(int n) {
        if (pos + size_t(n) > size * 8) fail("networks section truncated");
        int64_t v = 0;
        for (int i = 0; i < n; ++i, ++pos) v = (v << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1);
        return v;
    }
    int64_t read_signed_golomb(int k) {
        int n = 0;
        while (read(1) == 0)
            if (++n > 40) fail("exp-Golomb prefix too long");
        int64_t q = (int64_t(1) << n) | read(n);
        int64_t u = ((q - 1) << k) | read(k);
        return (u != 0 && read(1)) ? -u : u;
    }
};

struct Tensor {
    std::vector<int64_t> v;
};

struct Networks {
    std::vector<std::vector<int64_t>> arm_w, arm_b;  // per layer (out, in) and (out)
    std::vector<LayerShape> arm_shape;
    std::vector<float> ups;                           // (2, 2, T, T)
    std::vector<std::vector<float>> mod;              // w0 b0 w1 b1 w2 b2 w3 b3
};

std::vector<int64_t> read_tensor(BitReader& br, size_t n, int64_t limit, const char* module) {
    int k = int(br.read(5));
    if (k > 24) fail("exp-Golomb order above 24");
    std::vector<int64_t> out(n);
    for (auto& x : out) {
        x = br.read_signed_golomb(k);
        if (x > limit || x < -limit) fail(std::string(module) + " parameter out of range");
    }
    return out;
}

Networks read_networks(const uint8_t* data, size_t size, const Config& c) {
    BitReader br{data, size};
    Networks n;
    std::vector<int> dims{int(c.arm_context)};
    for (int i = 0; i < c.arm_layers; ++i) dims.push_back(int(c.arm_width));
    dims.push_back(2);
    for (size_t l = 0; l + 1 < dims.size(); ++l) {
        n.arm_shape.push_back({dims[l], dims[l + 1]});
        n.arm_w.push_back(read_tensor(br, size_t(dims[l]) * dims[l + 1], kArmParamMax, "arm"));
        n.arm_b.push_back(read_tensor(br, size_t(dims[l + 1]), kArmParamMax, "arm"));
    }
    int T = int(c.ups_kernel_size / 2);
    float ups_step = std::ldexp(1.0f, -int(c.ups_step_exp));
    for (int64_t q : read_tensor(br, size_t(4 * T * T), kNetValueMax, "ups")) n.ups.push_back(float(q) * ups_step);
    size_t mw = size_t(c.mod_width), mo = size_t(c.mod_out), L = size_t(c.n_grids);
    const size_t sizes[8] = {mw * L, mw, mo * mw, mo, mo * mo * 9, mo, mo * mo * 9, mo};
    for (int i = 0; i < 8; ++i) {
        float step = std::ldexp(1.0f, -int(i % 2 ? c.mod_bias_step_exp : c.mod_weight_step_exp));
        std::vector<float> t;
        for (int64_t q : read_tensor(br, sizes[i], kNetValueMax, "mod")) t.push_back(float(q) * step);
        n.mod.push_back(std::move(t));
    }
    if (size * 8 - br.pos >= 8) fail("networks section has trailing data");
    while (br.pos < size * 8)
        if (br.read(1)) fail("networks section has trailing data");
    // Overflow bound (docs/FORMAT.md §5): every int32 accumulator provably fits.
    int64_t bound = c.latent_bound << kActFrac;
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        int64_t worst = 0;
        for (int o = 0; o < n.arm_shape[l].fan_out; ++o) {
            int64_t acc = (std::llabs(n.arm_b[l][o]) << kActFrac) + (int64_t(1) << (c.arm_frac_bits - 1));
            for (int i = 0; i < n.arm_shape[l].fan_in; ++i)
                acc += std::llabs(n.arm_w[l][size_t(o) * n.arm_shape[l].fan_in + i]) * bound;
            worst = std::max(worst, acc);
        }
        if (worst > INT32_MAX) fail("ARM parameters could overflow a 32-bit accumulator");
        bound = worst >> c.arm_frac_bits;
    }
    return n;
}

// ------------------------------------------------------------------------------ range decoding

// constriction's queue RangeDecoder (u32 words, u64 state, 24-bit precision).
struct RangeDecoder {
    const uint32_t* words;
    size_t n, next = 0;
    uint64_t lower = 0, range = ~uint64_t(0), point = 0;
    RangeDecoder(const uint32_t* w, size_t count) : words(w), n(count) {
        int read = 0;
        while (read < 2 && next < n) { point = (point << 32) | words[next++]; ++read; }
        if (read == 1) point <<= 32;
    }
    // cum: 257 (or 3) cumulative edges; returns the symbol.
    int decode(const uint32_t* cum, int symbols) {
        uint64_t scale = range >> kPrecision;
        uint64_t quantile = (point - lower) / scale;
        if (quantile >= (uint64_t(1) << kPrecision)) fail("corrupt entropy-coded data (invalid quantile)");
        int s = int(std::upper_bound(cum, cum + symbols + 1, uint32_t(quantile)) - cum) - 1;
        lower += scale * cum[s];
        range = scale * (uint64_t(cum[s + 1]) - cum[s]);
        if (range < (uint64_t(1) << 32)) {
            lower <<= 32;
            range <<= 32;
            point <<= 32;
            if (next < n) point |= words[next++];
        }
        return s;
    }
};

struct Unit {
    int grid, row0, row1;
};

std::vector<std::vector<Unit>> substream_plan(const Config& c, int height, int width) {
    auto shapes = grid_shapes(c, height, width);
    std::vector<std::vector<Unit>> plan;
    std::vector<Unit> shared;
    for (int g = int(c.n_grids) - 1; g >= 0; --g)
        if (int64_t(shapes[g].first) * shapes[g].second <= c.shared_max_pixels) shared.push_back({g, 0, shapes[g].first});
    if (!shared.empty()) plan.push_back(shared);
    for (int g = int(c.n_grids) - 1; g >= 0; --g) {
        auto [h, w] = shapes[g];
        if (int64_t(h) * w > c.shared_max_pixels)
            for (int r = 0; r < h; r += int(c.stripe_height))
                plan.push_back({{g, r, int(std::min<int64_t>(r + c.stripe_height, h))}});
    }
    return plan;
}

std::vector<std::pair<int, int>> context_offsets() {
    std::vector<std::pair<int, int>> c;
    for (int dy = 0; dy < 5; ++dy)
        for (int dx = -4; dx < 5; ++dx)
            if (dy > 0 || dx > 0) c.push_back({dy, dx});
    std::stable_sort(c.begin(), c.end(), [](auto a, auto b) {
        int da = a.first * a.first + a.second * a.second, db = b.first * b.first + b.second * b.second;
        return da != db ? da < db : (a.first != b.first ? a.first < b.first : a.second < b.second);
    });
    c.resize(32);
    return c;
}

void arm_forward(const Networks& n, const Config& c, std::vector<int64_t>& x, std::vector<int64_t>& y,
                 int64_t& mu, int64_t& ls) {
    const int64_t half = int64_t(1) << (c.arm_frac_bits - 1);
    const size_t last = n.arm_w.size() - 1;
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        const LayerShape s = n.arm_shape[l];
        y.assign(size_t(s.fan_out), 0);
        for (int o = 0; o < s.fan_out; ++o) {
            int64_t acc = n.arm_b[l][o] * (int64_t(1) << kActFrac) + half;  // no shifts of negatives (UB)
            const int64_t* w = &n.arm_w[l][size_t(o) * s.fan_in];
            for (int i = 0; i < s.fan_in; ++i) acc += w[i] * x[i];
            int64_t v = acc >> c.arm_frac_bits;
            y[o] = (l < last && v < 0) ? 0 : v;
        }
        std::swap(x, y);
    }
    mu = x[0];
    ls = x[1];
}

void decode_latents(const std::vector<std::vector<uint32_t>>& substreams, const Networks& n, const Config& c,
                    int height, int width, const Tables& tables, Decoded& out, int threads) {
    auto plan = substream_plan(c, height, width);
    if (plan.size() != substreams.size()) fail("latent substream count does not match the configuration");
    out.grid_shapes = grid_shapes(c, height, width);
    out.latents.clear();
    for (auto [h, w] : out.grid_shapes) out.latents.emplace_back(size_t(h) * w, 0);
    auto offsets = context_offsets();
    const int A = int(c.latent_bound), C = int(c.arm_context);
    for (size_t s = 0; s < plan.size(); ++s) {  // all sizes checked before any decoding starts
        int64_t symbols = 0;
        for (const Unit& u : plan[s]) symbols += int64_t(u.row1 - u.row0) * out.grid_shapes[u.grid].second;
        if (symbols > (32 * int64_t(substreams[s].size()) + kSymbolSlackBits) * kMaxSymbolsPerBit)
            fail("latent substream: more symbols than its bytes can hold");
    }
    parallel_for(int(plan.size()), threads, [&](int s) {
        std::vector<int64_t> x, y;
        RangeDecoder dec(substreams[s].data(), substreams[s].size());
        for (const Unit& u : plan[s]) {
            const int w = out.grid_shapes[u.grid].second, h = u.row1 - u.row0, pitch = w + 8;
            std::vector<int64_t> buf(size_t(h + 4) * pitch, 0);
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx) {
                    const size_t pos = size_t(yy + 4) * pitch + xx + 4;
                    x.resize(size_t(C));
                    for (int k = 0; k < C; ++k)
                        x[k] = buf[pos - size_t(offsets[k].first) * pitch - offsets[k].second] * (int64_t(1) << kActFrac);
                    int64_t mu, ls;
                    arm_forward(n, c, x, y, mu, ls);
                    int64_t mu8 = std::clamp<int64_t>((mu + 16) >> 5, -int64_t(kMuSteps) * A, int64_t(kMuSteps) * A - 1);
                    int64_t m = mu8 >> 3, f = mu8 & (kMuSteps - 1);
                    int64_t si = std::clamp<int64_t>(
                        (ls * kScaleStepsPerOctave - kLog2ScaleMin * kScaleStepsPerOctave * (1 << kActFrac) + 128) >> kActFrac,
                        0, kScales - 1);
                    const uint32_t* cum = &tables.cum[size_t(f * kScales + si) * 256];
                    int64_t v = m + dec.decode(cum, kSymbols) - kResidualMax;
                    if (v < -A || v >= A) fail("decoded latent outside the alphabet (corrupt substream)");
                    buf[pos] = v;
                }
            auto& grid = out.latents[u.grid];
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx)
                    grid[size_t(u.row0 + yy) * w + xx] = int32_t(buf[size_t(yy + 4) * pitch + xx + 4]);
        }
    });
}

std::vector<std::vector<uint8_t>> decode_mask(const std::vector<int64_t>& counts, const uint32_t* words, size_t n_words,
                                              const std::vector<LayerShape>& shapes) {
    RangeDecoder dec(words, n_words);
    std::vector<std::vector<uint8_t>> masks;
    for (size_t l = 0; l < shapes.size(); ++l) {
        int64_t n = int64_t(shapes[l].fan_in) * shapes[l].fan_out, rem_k = counts[l];
        if (rem_k > n) fail("mask layer keeps more weights than it has");
        std::vector<uint8_t> bits(size_t(n), 0);
        for (int64_t i = 0; i < n && rem_k > 0; ++i) {
            int64_t rem_n = n - i;
            if (rem_k == rem_n) {
                std::fill(bits.begin() + i, bits.end(), 1);
                break;
            }
            int64_t f1 = std::clamp<int64_t>((rem_k << kPrecision) / rem_n, 1, (int64_t(1) << kPrecision) - 1);
            uint32_t cum[3] = {0, uint32_t((int64_t(1) << kPrecision) - f1), uint32_t(1) << kPrecision};
            if (dec.decode(cum, 2)) {
                bits[size_t(i)] = 1;
                --rem_k;
            }
        }
        masks.push_back(std::move(bits));
    }
    return masks;
}

// ------------------------------------------------------------------------------ seeded weights

uint32_t philox_word0(uint64_t seed, uint64_t offset) {
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    uint32_t c0 = uint32_t(offset), c1 = uint32_t(offset >> 32), c2 = 0, c3 = 0;
    for (int r = 0; r < 10; ++r) {
        uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
        uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n1 = uint32_t(p1), n2 = uint32_t(p0 >> 32) ^ c3 ^ k1, n3 = uint32_t(p0);
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

// ------------------------------------------------------------------------------ float stages

float tanh_f(float x) { return 1.0f - 2.0f / (std::exp(2.0f * x) + 1.0f); }
float gelu(float x) { return 0.5f * x * (1.0f + tanh_f(0.7978845608028654f * (x + 0.044715f * x * x * x))); }

std::vector<float> upsample_2x(const std::vector<float>& x, int h, int w, const std::vector<float>& k, int T,
                               int out_h, int out_w, int threads) {
    std::vector<float> out(size_t(out_h) * out_w);
    parallel_for(out_h, threads, [&](int yy) {
        for (int xx = 0; xx < out_w; ++xx) {
            int a = yy & 1, b = xx & 1, i = yy >> 1, j = xx >> 1;
            float acc = 0.0f;
            for (int p = 0; p < T; ++p) {
                int r = std::clamp(i + a - T / 2 + p, 0, h - 1);
                for (int q = 0; q < T; ++q) {
                    int cc = std::clamp(j + b - T / 2 + q, 0, w - 1);
                    acc += k[size_t(((a * 2 + b) * T + p) * T + q)] * x[size_t(r) * w + cc];
                }
            }
            out[size_t(yy) * out_w + xx] = acc;
        }
    });
    return out;
}

void residual3x3(const std::vector<float>& src, std::vector<float>& dst, const std::vector<float>& w,
                 const std::vector<float>& b, int mo, int H, int W, int threads) {
    const size_t HW = size_t(H) * W;
    dst.assign(size_t(mo) * HW, 0.0f);
    parallel_for(H, threads, [&](int y) {
        for (int x = 0; x < W; ++x)
            for (int o = 0; o < mo; ++o) {
                float acc = 0.0f;
                for (int ky = 0; ky < 3; ++ky)
                    for (int kx = 0; kx < 3; ++kx) {
                        size_t p = size_t(std::clamp(y + ky - 1, 0, H - 1)) * W + std::clamp(x + kx - 1, 0, W - 1);
                        for (int ci = 0; ci < mo; ++ci)
                            acc += w[((size_t(o) * mo + ci) * 3 + ky) * 3 + kx] * src[size_t(ci) * HW + p];
                    }
                size_t p = size_t(y) * W + x;
                dst[size_t(o) * HW + p] = gelu(acc + b[o] + src[size_t(o) * HW + p]);
            }
    });
}

}  // namespace

const std::vector<FieldRange>& config_fields() {
    static const std::vector<FieldRange> fields = [] {
        std::vector<FieldRange> f;
        for (const auto& s : field_specs()) f.push_back(s.range);
        return f;
    }();
    return fields;
}

Tables Tables::from_weights(const uint32_t* weights, size_t count) {
    if (count != size_t(kMuSteps) * kScales * kSymbols) throw std::invalid_argument("tables have the wrong size");
    Tables t;
    t.cum.assign(size_t(kMuSteps) * kScales * 256, 0);
    for (size_t table = 0; table < size_t(kMuSteps) * kScales; ++table) {
        uint64_t acc = 0;
        for (int s = 0; s < kSymbols; ++s) {
            t.cum[table * 256 + s] = uint32_t(acc);
            acc += uint64_t(weights[table * kSymbols + s]) + 1;
        }
        if (acc != (uint64_t(1) << kPrecision)) throw std::invalid_argument("table frequencies do not sum to 2^24");
        t.cum[table * 256 + kSymbols] = uint32_t(acc);
    }
    return t;
}

Tables Tables::from_npy_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open frequency tables " + path);
    std::vector<uint8_t> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (crc32(raw.data(), raw.size()) != kTablesCrc) throw std::runtime_error(path + ": not the pinned frequency tables");
    size_t header = 10 + read_le(&raw[8], 2);
    std::vector<uint32_t> w((raw.size() - header) / 4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = uint32_t(read_le(&raw[header + 4 * i], 4));
    return from_weights(w.data(), w.size());
}

Decoded decode(const uint8_t* data, size_t size, const Tables& tables, int threads, bool latents_only) {
    auto t0 = Clock::now();
    if (size < 7) fail("file too short for a LotteryCodec header");
    if (std::memcmp(data, "LOTC", 4) != 0) fail("not a LotteryCodec file (bad magic)");
    if (data[4] != 1) fail("unsupported format version " + std::to_string(data[4]) + " (this decoder reads version 1)");
    if (read_le(data + 5, 2) != kHeaderSize) fail("header size does not match version 1");
    if (size < kHeaderSize + 4) fail("file truncated inside the header");
    if (crc32(data, kHeaderSize - 4) != read_le(data + kHeaderSize - 4, 4)) fail("header CRC mismatch (corrupted file)");
    const int width = int(read_le(data + 7, 2)), height = int(read_le(data + 9, 2));
    const uint64_t seed = read_le(data + 13, 8);
    Config c{};
    size_t pos = 21;
    for (const auto& s : field_specs()) {
        int64_t v = int64_t(read_le(data + pos, s.bytes));
        pos += size_t(s.bytes);
        if (v < s.range.lo || v > s.range.hi)
            fail(std::string("config field ") + s.range.name + " outside its allowed range");
        c.*(s.member) = v;
    }
    if (data[11] != 3 || data[12] != 8) fail("unsupported channels or bit depth (version 1: 3 at 8)");
    if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide || int64_t(width) * height > kMaxPixels)
        fail("image size outside 1..16384 per side, 2^26 pixels in all");
    if (c.ups_kernel_size % 2) fail("ups_kernel_size must be even");
    auto shapes_io = synth_in_out(c);
    int64_t total = 0;
    for (auto s : shapes_io) total += int64_t(s.fan_in) * s.fan_out;
    if (c.kept_weights > total) fail("kept_weights exceeds the synthesis weights");
    const uint64_t n_nets = read_le(data + 47, 4), n_mask = read_le(data + 51, 4), n_lat = read_le(data + 55, 4);
    const uint64_t expected = kHeaderSize + n_nets + n_mask + n_lat + 4;
    if (size < expected) fail("file truncated");
    if (size > expected) fail("trailing data after the payload");
    const uint8_t* payload = data + kHeaderSize;
    if (crc32(payload, size_t(n_nets + n_mask + n_lat)) != read_le(data + expected - 4, 4))
        fail("payload CRC mismatch (corrupted file)");

    auto varint = [](const uint8_t* p, size_t n, size_t& at) {
        uint64_t v = 0;
        for (int shift = 0; shift < 35; shift += 7) {
            if (at >= n) fail("varint truncated");
            uint8_t b = p[at++];
            v |= uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        fail("varint too long");
    };
    auto words_of = [](const uint8_t* p, size_t n) {
        if (n % 4) fail("section is not a whole number of 32-bit words");
        std::vector<uint32_t> w(n / 4);
        for (size_t i = 0; i < w.size(); ++i) w[i] = uint32_t(read_le(p + 4 * i, 4));
        return w;
    };
    Networks nets = read_networks(payload, size_t(n_nets), c);
    const uint8_t* mask = payload + n_nets;
    size_t at = 0;
    std::vector<int64_t> counts;
    int64_t kept = 0;
    for (int l = 0; l < 4; ++l) {
        counts.push_back(int64_t(varint(mask, size_t(n_mask), at)));
        kept += counts.back();
    }
    if (kept != c.kept_weights) fail("mask keeps a different number of weights than the header says");
    auto mask_words = words_of(mask + at, size_t(n_mask) - at);
    const uint8_t* lat = mask + n_mask;
    auto plan = substream_plan(c, height, width);
    std::vector<uint64_t> sizes;
    at = 0;
    uint64_t total_words = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        sizes.push_back(varint(lat, size_t(n_lat), at));
        total_words += sizes.back();
    }
    if (at + 4 * total_words != n_lat) fail("latent substream index does not match the latent section size");
    std::vector<std::vector<uint32_t>> substreams;
    size_t off = at;
    for (uint64_t s : sizes) {
        substreams.push_back(words_of(lat + off, size_t(4 * s)));
        off += size_t(4 * s);
    }
    auto masks = decode_mask(counts, mask_words.data(), mask_words.size(), shapes_io);
    // Kept weights packed once per image, per output neuron: work follows the mask.
    struct Packed {
        std::vector<uint32_t> start;  // fan_out + 1 offsets into index/value
        std::vector<uint16_t> index;
        std::vector<float> value;
    };
    std::vector<Packed> packed(shapes_io.size());
    for (size_t l = 0; l < shapes_io.size(); ++l) {
        auto [fin, fout] = shapes_io[l];
        float scale = float(std::sqrt(6.0 / fin));
        Packed& pk = packed[l];
        pk.start.push_back(0);
        for (int o = 0; o < fout; ++o) {
            for (int i = 0; i < fin; ++i) {
                size_t flat = size_t(o) * fin + i;
                if (!masks[l][flat]) continue;
                int32_t word = int32_t(philox_word0(seed, (uint64_t(l) << 32) | flat));
                pk.index.push_back(uint16_t(i));
                pk.value.push_back(float(word >> 8) * 1.1920928955078125e-07f * scale);
            }
            pk.start.push_back(uint32_t(pk.index.size()));
        }
    }
    Decoded out;
    out.width = width;
    out.height = height;
    out.t_parse = seconds_since(t0);

    auto t1 = Clock::now();
    decode_latents(substreams, nets, c, height, width, tables, out, threads);
    out.t_entropy = seconds_since(t1);
    if (latents_only) return out;

    auto t2 = Clock::now();
    const int L = int(c.n_grids), T = int(c.ups_kernel_size / 2);
    const size_t HW = size_t(height) * width;
    std::vector<float> up(size_t(L) * HW);
    for (int l = 0; l < L; ++l) {
        std::vector<float> x(out.latents[l].begin(), out.latents[l].end());
        for (int level = l - 1; level >= 0; --level)
            x = upsample_2x(x, out.grid_shapes[level + 1].first, out.grid_shapes[level + 1].second, nets.ups, T,
                            out.grid_shapes[level].first, out.grid_shapes[level].second, threads);
        std::copy(x.begin(), x.end(), up.begin() + size_t(l) * HW);
    }
    out.t_upsampling = seconds_since(t2);

    auto t3 = Clock::now();
    const int mw = int(c.mod_width), mo = int(c.mod_out);
    const auto& M = nets.mod;
    std::vector<float> o0(size_t(mw) * HW), o1(size_t(mo) * HW), o2, o3;
    parallel_for(height, threads, [&](int row) {
      for (size_t p = size_t(row) * width; p < size_t(row + 1) * width; ++p) {
        for (int o = 0; o < mw; ++o) {
            float acc = 0.0f;
            for (int ch = 0; ch < L; ++ch) acc += M[0][size_t(o) * L + ch] * up[size_t(ch) * HW + p];
            o0[size_t(o) * HW + p] = gelu(acc + M[1][o]);
        }
        for (int o = 0; o < mo; ++o) {
            float acc = 0.0f;
            for (int ch = 0; ch < mw; ++ch) acc += M[2][size_t(o) * mw + ch] * o0[size_t(ch) * HW + p];
            o1[size_t(o) * HW + p] = gelu(acc + M[3][o]);
        }
      }
    });
    residual3x3(o1, o2, M[4], M[5], mo, height, width, threads);
    residual3x3(o2, o3, M[6], M[7], mo, height, width, threads);
    out.t_modulation = seconds_since(t3);

    auto t4 = Clock::now();
    out.rgb.assign(HW * 3, 0);
    const float* mods[4] = {o3.data(), o2.data(), o1.data(), o0.data()};  // rewind order
    const int mod_ch[4] = {mo, mo, mo, mw};
    parallel_for(height, threads, [&](int y) {
        std::vector<float> in(256), next(256);
        for (int x = 0; x < width; ++x) {
            const size_t p = size_t(y) * width + x;
            in[0] = width == 1 ? 0.0f : float(2 * x - (width - 1)) / float(width - 1);
            in[1] = height == 1 ? 0.0f : float(2 * y - (height - 1)) / float(height - 1);
            for (int l = 0; l < 4; ++l) {
                // layer l input: [h | o3 | o2 | ...], l + 1 modulation segments from layer 1 on
                int n_in = l == 0 ? 2 : shapes_io[l - 1].fan_out;
                for (int s = 0; l > 0 && s <= l; ++s)
                    for (int ch = 0; ch < mod_ch[s]; ++ch) in[n_in++] = mods[s][size_t(ch) * HW + p];
                const Packed& pk = packed[l];
                const int fout = shapes_io[l].fan_out;
                for (int o = 0; o < fout; ++o) {
                    float acc = 0.0f;
                    for (uint32_t k = pk.start[o]; k < pk.start[o + 1]; ++k) acc += pk.value[k] * in[pk.index[k]];
                    next[o] = l < 3 ? gelu(acc) : acc;
                }
                std::copy(next.begin(), next.begin() + fout, in.begin());
            }
            for (int ch = 0; ch < 3; ++ch) {
                float v = 1.0f / (1.0f + std::exp(-2.0f * in[ch]));
                v = std::min(std::max(v, 0.0f), 1.0f);
                out.rgb[p * 3 + ch] = uint8_t(std::floor(v * 255.0f + 0.5f));
            }
        }
    });
    out.t_synthesis = seconds_since(t4);
    return out;
}

}  // namespace lotc
