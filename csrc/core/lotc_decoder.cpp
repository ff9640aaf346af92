// Port of decoder/reference.py (docs/FORMAT.md). Every size is checked against the bytes present
// before anything is allocated; errors throw DecodeError. The hot loops live in the kernel tables
// (lotc_kernels.h); this file parses, plans and runs the stages over row bands.
#include "lotc_decoder.h"
#include "lotc_kernels.h"

#include <algorithm>
#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

namespace lotc {
namespace {

constexpr int kResidualMax = 127;
constexpr int kSymbols = 2 * kResidualMax + 1;
constexpr int kMuSteps = 8, kScales = 48, kScaleStepsPerOctave = 4, kLog2ScaleMin = -4;
constexpr int kPrecision = 24;
constexpr int64_t kArmParamMax = 1 << 15;
constexpr int64_t kNetValueMax = 1 << 20;
constexpr int kVersion = 2;
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
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void fail(const std::string& msg) { throw DecodeError(msg); }

// Helper threads started once per decode (a thread start costs tens of microseconds; a decode
// runs two parallel loops). run(n, body) calls body(i, worker) for every i
// in [0, n), worker in [0, size()) naming the thread, so callers can keep per-thread scratch.
// Work items never share outputs, so the result is the same for every thread count. The first
// exception is rethrown after the loop.
class WorkerPool {
public:
    explicit WorkerPool(int threads) {
        for (int w = 1; w < threads; ++w) helpers_.emplace_back([this, w] { serve(w); });
    }
    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : helpers_) t.join();
    }
    int size() const { return int(helpers_.size()) + 1; }

    template <class F>
    void run(int n, F&& body) {
        if (helpers_.empty() || n <= 1) {
            for (int i = 0; i < n; ++i) body(i, 0);
            return;
        }
        auto call = [](void* f, int i, int worker) { (*static_cast<std::remove_reference_t<F>*>(f))(i, worker); };
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = {call, static_cast<void*>(&body), n};
            next_ = 0;
            error_ = nullptr;
            busy_ = int(helpers_.size());
            ++generation_;
        }
        wake_.notify_all();
        take_items(0);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        if (error_) std::rethrow_exception(error_);
    }

private:
    struct Job {
        void (*call)(void*, int, int) = nullptr;
        void* body = nullptr;
        int n = 0;
    };

    void take_items(int worker) {
        try {
            for (int i; (i = next_++) < job_.n;) job_.call(job_.body, i, worker);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            next_ = job_.n;
        }
    }

    void serve(int worker) {
        for (int seen = 0;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
            }
            take_items(worker);
            std::lock_guard<std::mutex> lock(mutex_);
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_, done_;
    Job job_;
    std::atomic<int> next_{0};
    int busy_ = 0, generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::vector<std::thread> helpers_;
};

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

// A LEB128 varint of at most max_bytes bytes within p[0, n); max_bytes <= 10, and a 10-byte one
// must fit 64 bits.
uint64_t read_varint(const uint8_t* p, size_t n, size_t& at, int max_bytes) {
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

std::vector<uint32_t> section_words(const uint8_t* p, size_t n) {
    if (n % 4) fail("section is not a whole number of 32-bit words");
    std::vector<uint32_t> w(n / 4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = uint32_t(read_le(p + 4 * i, 4));
    return w;
}

// ------------------------------------------------------------------------------ config

struct Config {
    int64_t n_grids, latent_bound, stripe_height, shared_max_pixels, arm_context, arm_layers, arm_width,
        arm_frac_bits, ups_kernel_size, ups_step_exp, mod_width, mod_out, mod_weight_step_exp,
        mod_bias_step_exp, synth_width0, synth_width1, synth_width2, synth_mode, kept_weights;
};

struct FieldSpec {
    FieldRange range;
    int64_t Config::*member;
};

const std::vector<FieldSpec>& field_specs() {
    static const std::vector<FieldSpec> specs = {
        {{"n_grids", 1, 8}, &Config::n_grids},
        {{"latent_bound", 1, 64}, &Config::latent_bound},
        {{"stripe_height", 1, 65535}, &Config::stripe_height},
        {{"shared_max_pixels", 0, kMaxPixels}, &Config::shared_max_pixels},
        {{"arm_context", 0, 32}, &Config::arm_context},
        {{"arm_layers", 0, 4}, &Config::arm_layers},
        {{"arm_width", 1, 64}, &Config::arm_width},
        {{"arm_frac_bits", 1, 12}, &Config::arm_frac_bits},
        {{"ups_kernel_size", 4, 12}, &Config::ups_kernel_size},
        {{"ups_step_exp", 0, 24}, &Config::ups_step_exp},
        {{"mod_width", 1, 64}, &Config::mod_width},
        {{"mod_out", 1, 16}, &Config::mod_out},
        {{"mod_weight_step_exp", 0, 24}, &Config::mod_weight_step_exp},
        {{"mod_bias_step_exp", 0, 24}, &Config::mod_bias_step_exp},
        {{"synth_width0", 1, 64}, &Config::synth_width0},
        {{"synth_width1", 1, 64}, &Config::synth_width1},
        {{"synth_width2", 1, 64}, &Config::synth_width2},
        {{"synth_mode", 0, 1}, &Config::synth_mode},
        {{"kept_weights", 0, int64_t(1) << 20}, &Config::kept_weights},
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

// ------------------------------------------------------------------------------ range decoding

// constriction's queue RangeDecoder (u32 words, u64 state, 24-bit precision).
struct RangeDecoder {
    const uint32_t* words;
    size_t n, next = 0;
    uint64_t lower = 0, range = ~uint64_t(0), point = 0;
    // Words read, those past the stream's end included (2 to start, 1 per refill), and symbols
    // decoded: finish() checks the stream ends where they do.
    size_t reads = 2, decoded = 0;
    RangeDecoder(const uint32_t* w, size_t count) : words(w), n(count) {
        int read = 0;
        while (read < 2 && next < n) { point = (point << 32) | words[next++]; ++read; }
        if (read == 1) point <<= 32;
    }
    // cum: symbols + 1 cumulative edges; returns the symbol. start: where to begin a linear walk
    // (the table's mode) or -1 for a binary search.
    int decode(const uint32_t* cum, int symbols, int start = -1) {
        // constriction computes quantile = (point - lower) / scale and picks the largest s with
        // cum[s] <= quantile. For an integer cum[s] that is scale * cum[s] <= point - lower, so
        // the search compares products instead: no 64-bit division on the serial path (the
        // products stay below 2^64: scale < 2^40, cum <= 2^24).
        const uint64_t scale = range >> kPrecision;
        const uint64_t offset = point - lower;
        if (offset >= (scale << kPrecision)) fail("corrupt entropy-coded data (invalid quantile)");
        int s = start;
        if (s >= 0) {  // narrow tables: the symbol is almost always the mode or a neighbour
            if (scale * cum[s] > offset) {
                do --s; while (scale * cum[s] > offset);  // cum[0] = 0 stops it
            } else {
                while (scale * cum[s + 1] <= offset) ++s;  // cum[symbols] = 2^24 stops it
            }
        } else {  // branch-free bisection: the symbol is data-dependent, branches would mispredict
            s = 0;
            for (int step = 128; step > 0; step >>= 1) {
                int probe = s + step;
                s = (probe <= symbols && scale * cum[probe] <= offset) ? probe : s;
            }
        }
        lower += scale * cum[s];
        range = scale * (uint64_t(cum[s + 1]) - cum[s]);
        if (range < (uint64_t(1) << 32)) {
            lower <<= 32;
            range <<= 32;
            point <<= 32;
            if (next < n) point |= words[next++];
            // A stream's encoder emitted at least reads - 1 words: reading further past the end
            // is a forged stream, stopped here rather than decoded from zeros (finish() would
            // refuse it anyway, but only after its last symbol).
            if (++reads > n + 1) fail("entropy-coded stream read past its end (corrupt or forged)");
        }
        ++decoded;
        return s;
    }
    // docs/FORMAT.md 5, "Stream end": the state follows from the decoded symbols alone, so the
    // encoder's output is known: a word per refill, then its seal, the top word of
    // lower + 2^32 - 1 and, when that is also the top word of lower + range, a zero word. No
    // symbol, no word. Anything else is junk or a forgery.
    void finish(const char* what) const {
        bool exact = n == 0;
        if (decoded) {
            const uint64_t point = lower + 0xFFFFFFFFull;
            const bool zero_word = ((lower + range) >> 32) == (point >> 32);
            exact = n == reads - 1 + zero_word && words[reads - 2] == uint32_t(point >> 32) &&
                    (!zero_word || words[n - 1] == 0);
        }
        if (!exact) fail(std::string(what) + ": its words do not end where its symbols do");
    }
};

// ------------------------------------------------------------------------------ networks

struct Networks {
    std::vector<std::vector<int64_t>> arm_w, arm_b;  // per layer (out, in) and (out)
    std::vector<LayerShape> arm_shape;
    std::vector<float> ups;                           // (2, 2, T, T)
    std::vector<std::vector<float>> mod;              // w0 b0 w1 b1 w2 b2 w3 b3
    std::vector<ArmLayer> arm;                        // the ARM as the kernels run it
};

std::vector<uint32_t> uniform_cum(int symbols) {
    std::vector<uint32_t> cum(size_t(symbols) + 1);
    for (int i = 0; i <= symbols; ++i) cum[size_t(i)] = uint32_t((uint64_t(i) << kPrecision) / uint64_t(symbols));
    return cum;
}

// One sent tensor (docs/FORMAT.md §5): its table, then its values, each escaped value followed by
// the digits of |v| - 127.
std::vector<int64_t> read_tensor(RangeDecoder& dec, const Tables& tables, size_t n, int64_t limit,
                                 const char* module) {
    static const std::vector<uint32_t> scale_cum = uniform_cum(kNetScaleSymbols);
    static const std::vector<uint32_t> digit_cum = uniform_cum(kEscapeSymbols);
    std::vector<int64_t> out(n);
    if (!n) return out;
    const int s = dec.decode(scale_cum.data(), kNetScaleSymbols);
    if (s >= kScales) fail(std::string(module) + " tensor table above 47");
    const uint32_t* cum = tables.cum.data() + size_t(s) * Tables::kRowStride;  // mu fraction 0
    for (auto& x : out) {
        int64_t v = dec.decode(cum, kSymbols) - kResidualMax;
        if (v == kResidualMax || v == -kResidualMax) {
            int64_t excess = 0;
            for (int d = 0;; ++d) {
                if (d == kMaxEscapeDigits) fail(std::string(module) + " parameter escape too long");
                const int digit = dec.decode(digit_cum.data(), kEscapeSymbols);
                excess |= int64_t(digit & ((1 << kEscapeDigitBits) - 1)) << (kEscapeDigitBits * d);
                if (!(digit >> kEscapeDigitBits)) break;
            }
            v += v > 0 ? excess : -excess;
        }
        if (v > limit || v < -limit) fail(std::string(module) + " parameter out of range");
        x = v;
    }
    return out;
}

Networks read_networks(const uint8_t* data, size_t size, const Config& c, const Tables& tables) {
    const std::vector<uint32_t> words = section_words(data, size);
    RangeDecoder dec(words.data(), words.size());
    Networks n;
    std::vector<int> dims{int(c.arm_context)};
    for (int i = 0; i < c.arm_layers; ++i) dims.push_back(int(c.arm_width));
    dims.push_back(2);
    for (size_t l = 0; l + 1 < dims.size(); ++l) {
        n.arm_shape.push_back({dims[l], dims[l + 1]});
        n.arm_w.push_back(read_tensor(dec, tables, size_t(dims[l]) * dims[l + 1], kArmParamMax, "arm"));
        n.arm_b.push_back(read_tensor(dec, tables, size_t(dims[l + 1]), kArmParamMax, "arm"));
    }
    int T = int(c.ups_kernel_size / 2);
    float ups_step = std::ldexp(1.0f, -int(c.ups_step_exp));
    for (int64_t q : read_tensor(dec, tables, size_t(4 * T * T), kNetValueMax, "ups"))
        n.ups.push_back(float(q) * ups_step);
    size_t mw = size_t(c.mod_width), mo = size_t(c.mod_out), L = size_t(c.n_grids);
    const size_t sizes[8] = {mw * L, mw, mo * mw, mo, mo * mo * 9, mo, mo * mo * 9, mo};
    for (int i = 0; i < 8; ++i) {
        float step = std::ldexp(1.0f, -int(i % 2 ? c.mod_bias_step_exp : c.mod_weight_step_exp));
        std::vector<float> t;
        for (int64_t q : read_tensor(dec, tables, sizes[i], kNetValueMax, "mod")) t.push_back(float(q) * step);
        n.mod.push_back(std::move(t));
    }
    dec.finish("networks section");
    // Overflow bound (docs/FORMAT.md §5): every int32 accumulator provably fits.
    int64_t bound = c.latent_bound << kActFrac;
    std::vector<int64_t> input_bound;  // per layer: |input| <= this
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        input_bound.push_back(bound);
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
    // Proven above: every product and partial sum fits in int32, so the kernels use int32 lanes.
    const int32_t half = int32_t(1) << (c.arm_frac_bits - 1);
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        ArmLayer a;
        a.fan_in = n.arm_shape[l].fan_in;
        a.fan_out = n.arm_shape[l].fan_out;
        a.padded_out = (a.fan_out + kArmLanes - 1) / kArmLanes * kArmLanes;
        a.weight_t.assign(size_t(a.fan_in) * a.padded_out, 0);
        a.bias.assign(size_t(a.padded_out), 0);
        bool weights16 = true;
        for (int o = 0; o < a.fan_out; ++o) {
            a.bias[o] = int32_t(n.arm_b[l][o] * (int64_t(1) << kActFrac)) + half;
            for (int i = 0; i < a.fan_in; ++i) {
                const int64_t w = n.arm_w[l][size_t(o) * a.fan_in + i];
                a.weight_t[size_t(i) * a.padded_out + o] = int32_t(w);
                weights16 = weights16 && w >= -32767 && w <= 32767;
            }
        }
        // Layer 0 reads latents * 2^ACT_FRAC (signed, < 2^15); later layers read ReLU outputs (>= 0).
        if (weights16 && input_bound[l] < (int64_t(1) << 15))
            a.inputs = ArmLayer::Inputs::kInt16;
        else if (weights16 && l > 0 && input_bound[l] < (int64_t(1) << 30) && a.fan_in >= 16)
            a.inputs = ArmLayer::Inputs::kSplit15;  // narrower layers: the split costs more than it saves
        if (weights16) {
            a.weight_pairs.assign(size_t((a.fan_in + 1) / 2) * a.padded_out * 2, 0);
            for (int i = 0; i < a.fan_in; ++i)
                for (int o = 0; o < a.fan_out; ++o)
                    a.weight_pairs[(size_t(i / 2) * a.padded_out + o) * 2 + (i & 1)] =
                        int16_t(a.weight_t[size_t(i) * a.padded_out + o]);
        }
        n.arm.push_back(std::move(a));
    }
    return n;
}

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

// Tables up to this scale index (scale 2^(-4 + i/4) < 2) are searched by walking from the mode.
constexpr int kWalkMaxScaleIndex = 20;

// How one latent is coded: its centre, the frequency table's row and the symbol search's start.
struct Coding {
    int32_t centre, row, start;
};

// One substream's decoding state; per latent: context -> ARM (or memo) -> table -> range decoder
// -> value.
class LatentCursor {
public:
    LatentCursor(const std::vector<uint32_t>& words, const std::vector<Unit>& units, const Config& c,
                 const Networks& n, const Tables& tables, const Kernels& kernels, const int32_t zero_mu_ls[2],
                 Decoded& out)
        : dec_(words.data(), words.size()), units_(units), n_(n), tables_(tables), kernels_(kernels), out_(out),
          bound_(int(c.latent_bound)), frac_(int(c.arm_frac_bits)), context_size_(int(c.arm_context)),
          zero_coding_(coding_of(zero_mu_ls)) {
        x_.assign(size_t(std::max(context_size_, kArmMaxWidth)), 0);
        offsets_.assign(size_t(std::max(context_size_, kMemoContext)), 0);
        if (context_size_ <= kMemoContext) memo_.assign(size_t(1) << kMemoBits, ArmMemo{{0, 0}, {0, 0, 0}});
        const bool small = context_size_ <= 8 && std::all_of(n.arm.begin(), n.arm.end(), [](const ArmLayer& l) {
            return l.fan_in <= kArmLanes && l.padded_out == kArmLanes;
        });
        if (small) arm_small_ = kernels.arm_small;
    }

    // Decodes every unit of the substream. The coder state, the unit's buffer and the loop
    // counters live in locals for a whole unit: as members, every store through the buffer or
    // the memo could alias them and force a reload on the serial path of every latent.
    void run() {
        for (open_unit(); unit_ < units_.size(); ++unit_, open_unit()) {
            RangeDecoder dec = dec_;
            int32_t* const buf = buf_.data();
            const ptrdiff_t* const offsets = offsets_.data();
            const int rows = rows_, width = width_;
            const ptrdiff_t pitch = pitch_;
            for (int yy = 0; yy < rows; ++yy) {
                int32_t* const row = buf + (yy + 4) * pitch + 4;
                for (int xx = 0; xx < width; ++xx) row[xx] = decode_one(dec, row + xx, offsets);
            }
            dec_ = dec;
            close_unit();
        }
        dec_.finish("latent substream");
    }

private:
    // The latent at `here`, whose causal context is already decoded.
    int32_t decode_one(RangeDecoder& dec, const int32_t* const here, const ptrdiff_t* const offsets) {
        const int n = context_size_;
        Coding coding = zero_coding_;  // an all-zero context needs no ARM: same inputs
        if (n <= kMemoContext) {
            // The ARM is a pure function of the context, and small contexts of small latents
            // repeat: a direct-mapped memo keyed by the context's latents packed one byte each
            // (|latent| <= 64 fits int8) into two words answers many of them (an all-zero key is
            // the all-zero context). Whole words of reads: an unused offset is 0, the current
            // cell, still 0 (not decoded yet). It holds the coding the ARM's output maps to, so
            // a hit goes straight to the table.
            uint64_t key[2] = {0, 0};
#pragma GCC unroll 8
            for (int k = 7; k >= 0; --k) key[0] = (key[0] << 8) | uint8_t(here[-offsets[k]]);
            if (n > 8) {
#pragma GCC unroll 8
                for (int k = 8; k < 16; ++k) key[1] = (key[1] << 8) | uint8_t(here[-offsets[k]]);
            }
            if (key[0] | key[1]) {
                const uint64_t hash = (key[0] ^ (key[1] * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
                ArmMemo& slot = memo_[size_t(hash >> (64 - kMemoBits))];
                if (slot.key[0] == key[0] && slot.key[1] == key[1]) {
                    coding = slot.coding;
                } else {
                    if (arm_small_) {  // key[0] holds the whole context, byte k = latent k
                        int32_t mu_ls[2];
                        arm_small_(key[0], n_.arm.data(), int(n_.arm.size()), frac_, mu_ls);
                        coding = coding_of(mu_ls);
                    } else {
                        int32_t* const x = x_.data();
                        for (int k = 0; k < n; ++k) x[k] = here[-offsets[k]] * (1 << kActFrac);
                        coding = arm_coding(x);
                    }
                    slot = {{key[0], key[1]}, coding};
                }
            }
        } else {
            int32_t* const x = x_.data();
            int32_t any = 0;
            for (int k = 0; k < n; ++k) any |= (x[k] = here[-offsets[k]] * (1 << kActFrac));
            if (any) coding = arm_coding(x);
        }
        const int32_t v = coding.centre + dec.decode(&tables_.cum[size_t(coding.row) * Tables::kRowStride], kSymbols, coding.start) -
                          kResidualMax;
        if (v < -bound_ || v >= bound_) fail("decoded latent outside the alphabet (corrupt substream)");
        return v;
    }

    // What the ARM's output on the context x (latents * 2^ACT_FRAC) selects: the centre m, the
    // table row (mean fraction f, scale index si) and where the symbol search starts.
    Coding arm_coding(const int32_t* const x) {
        int32_t mu_ls[2];
        kernels_.arm(x, n_.arm.data(), int(n_.arm.size()), frac_, mu_ls);
        return coding_of(mu_ls);
    }

    Coding coding_of(const int32_t mu_ls[2]) const {
        const int64_t A = bound_;
        const int64_t mu8 = std::clamp<int64_t>((int64_t(mu_ls[0]) + 16) >> 5, -kMuSteps * A, kMuSteps * A - 1);
        const int64_t m = mu8 >> 3, f = mu8 & (kMuSteps - 1);
        const int64_t si = std::clamp<int64_t>(
            (int64_t(mu_ls[1]) * kScaleStepsPerOctave - kLog2ScaleMin * kScaleStepsPerOctave * (1 << kActFrac) + 128) >>
                kActFrac,
            0, kScales - 1);
        const int32_t row = int32_t(f * kScales + si);
        return {int32_t(m), row, si < kWalkMaxScaleIndex ? int32_t(tables_.mode[size_t(row)]) : -1};
    }

    void open_unit() {  // the next non-empty unit from unit_ on
        while (unit_ < units_.size()) {
            const Unit& u = units_[unit_];
            width_ = out_.grid_shapes[u.grid].second;
            rows_ = u.row1 - u.row0;
            if (width_ > 0 && rows_ > 0) break;
            ++unit_;
        }
        if (unit_ >= units_.size()) return;
        pitch_ = width_ + 8;
        static const auto offsets = context_offsets();
        for (int k = 0; k < context_size_; ++k) offsets_[k] = ptrdiff_t(offsets[k].first) * pitch_ + offsets[k].second;
        // The decoded latents, with a zero border that stands for "outside".
        buf_.assign(size_t(rows_ + 4) * pitch_, 0);
    }

    void close_unit() {
        const Unit& u = units_[unit_];
        auto& grid = out_.latents[u.grid];
        for (int yy = 0; yy < rows_; ++yy)
            for (int xx = 0; xx < width_; ++xx)
                grid[size_t(u.row0 + yy) * width_ + xx] = int8_t(buf_[size_t(yy + 4) * pitch_ + xx + 4]);
    }

    RangeDecoder dec_;
    const std::vector<Unit>& units_;
    const Networks& n_;
    const Tables& tables_;
    const Kernels& kernels_;
    Decoded& out_;
    const int bound_, frac_, context_size_;
    const Coding zero_coding_;
    decltype(Kernels::arm_small) arm_small_ = nullptr;  // set when the network and the table allow it
    size_t unit_ = 0;
    int width_ = 0, rows_ = 0, pitch_ = 0;
    std::vector<int32_t> buf_, x_;
    struct ArmMemo {
        uint64_t key[2];  // all zero (the all-zero context, never looked up): an empty slot
        Coding coding;
    };
    static constexpr int kMemoBits = 12, kMemoContext = 16;
    std::vector<ArmMemo> memo_;  // only for contexts of at most kMemoContext
    std::vector<ptrdiff_t> offsets_;
};

// Decodes every substream on the pool. `coarse` (if set) runs as one more work item as soon as every
// grid but the full-resolution one is decoded, on one thread while the others go on decoding grid 0:
// the upsampling cascade needs only the coarse grids, and on its own it shares out badly (small
// levels). Returns the threads' summed seconds in substreams (the caller splits the stage's wall
// time between the two, as the fused float stages do).
double decode_latents(const std::vector<std::vector<uint32_t>>& substreams, const Networks& n, const Config& c,
                      int height, int width, const Tables& tables, Decoded& out, WorkerPool& pool,
                      const Kernels& kernels, const std::function<void()>& coarse) {
    auto plan = substream_plan(c, height, width);
    if (plan.size() != substreams.size()) fail("latent substream count does not match the configuration");
    out.grid_shapes = grid_shapes(c, height, width);
    std::vector<int64_t> symbols(plan.size(), 0);
    for (size_t s = 0; s < plan.size(); ++s) {  // all sizes checked before any allocation or decoding
        for (const Unit& u : plan[s]) symbols[s] += int64_t(u.row1 - u.row0) * out.grid_shapes[u.grid].second;
        if (symbols[s] > 32 * int64_t(substreams[s].size()) * kMaxSymbolsPerBit)
            fail("latent substream: more symbols than its bytes can hold");
    }
    out.latents.clear();
    for (auto [h, w] : out.grid_shapes) out.latents.emplace_back(size_t(h) * w, 0);
    const std::vector<int32_t> zero_context(size_t(kArmMaxWidth), 0);
    int32_t zero_mu_ls[2];
    kernels.arm(zero_context.data(), n.arm.data(), int(n.arm.size()), int(c.arm_frac_bits), zero_mu_ls);
    // Substreams holding a coarse grid first, then `coarse`, then grid 0's; largest first within each
    // group, so threads finish together. (Stepping several substreams in turn on one thread did not
    // help: the decoding is throughput-bound, not latency-bound.)
    std::vector<char> holds_coarse(plan.size());
    for (size_t s = 0; s < plan.size(); ++s)
        holds_coarse[s] = std::any_of(plan[s].begin(), plan[s].end(), [](const Unit& u) { return u.grid > 0; });
    constexpr int kCoarse = -1;
    std::vector<int> items(plan.size());  // substream indices, and kCoarse for `coarse`
    for (size_t s = 0; s < items.size(); ++s) items[s] = int(s);
    std::stable_sort(items.begin(), items.end(), [&](int a, int b) {
        return holds_coarse[a] != holds_coarse[b] ? bool(holds_coarse[a]) : symbols[a] > symbols[b];
    });
    const int coarse_inputs = int(std::count(holds_coarse.begin(), holds_coarse.end(), 1));
    if (coarse) items.insert(items.begin() + coarse_inputs, kCoarse);
    std::atomic<int> inputs_left{coarse_inputs};
    std::atomic<bool> failed{false};
    std::atomic<int64_t> substream_ns{0};
    pool.run(int(items.size()), [&](int i, int) {
        const int s = items[size_t(i)];
        if (s == kCoarse) {
            // Taken only after every input was handed out: at most threads - 1 are still running.
            while (inputs_left.load() > 0)
                if (failed.load()) return;
                else std::this_thread::yield();
            coarse();
            return;
        }
        const auto t = Clock::now();
        try {
            LatentCursor cursor(substreams[s], plan[s], c, n, tables, kernels, zero_mu_ls, out);
            cursor.run();
        } catch (...) {
            failed = true;
            throw;
        }
        if (holds_coarse[s]) --inputs_left;
        substream_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
    });
    return 1e-9 * double(substream_ns.load());
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
    dec.finish("mask section");
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

// The float side of the decoder as kernel-ready layers, built once per image.
struct FloatModel {
    int width = 0, height = 0, grids = 0, taps = 0, mod_width = 0, mod_out = 0;
    SparseLayer ups[2][2];     // per output phase (row, column): T x T taps, inputs p * T + q
    SparseLayer mod0, mod1;    // 1x1 convs: grids -> mod_width -> mod_out
    SparseLayer res2, res3;    // 3x3 residual convs: inputs (ci * 3 + ky) * 3 + kx, then 9 mo + o (the skip)
    // Kept weights of the live neurons; inputs [h | o3 | o2 | o1 | o0]. Layer 0 (inputs x, y) holds
    // only the neurons that read both coordinates; those reading x alone depend on the column only
    // (computed once per image: synth0_x), those reading y alone on the row only (once per row:
    // synth0_y). Layer 1 sees layer 0's outputs in the order [both | x alone | y alone].
    SparseLayer synth[4], synth0_x, synth0_y;
};

// The synthesis's kept weights as SparseLayers, dropping every hidden neuron that cannot change
// the output: one with no kept input from a live neuron or a modulation channel is GELU(0) = 0
// (the synthesis has no biases), one whose outputs no live neuron keeps is never read. Removing
// one can starve another, so the sweep repeats until nothing changes. Exact: a dropped term is
// w * 0, which changes no float sum.
void pack_synthesis(const std::vector<std::vector<uint8_t>>& masks, const std::vector<LayerShape>& shapes_io,
                    uint64_t seed, FloatModel& m) {
    const size_t layers = shapes_io.size();
    std::vector<std::vector<char>> live(layers);
    for (size_t l = 0; l < layers; ++l) live[l].assign(size_t(shapes_io[l].fan_out), 1);
    auto hidden_in = [&](size_t l) { return l == 0 ? 0 : shapes_io[l - 1].fan_out; };
    auto kept = [&](size_t l, int o, int i) { return masks[l][size_t(o) * shapes_io[l].fan_in + i] != 0; };
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t l = 0; l + 1 < layers; ++l) {
            const int fin = shapes_io[l].fan_in, fin_h = hidden_in(l);
            for (int o = 0; o < shapes_io[l].fan_out; ++o) {
                if (!live[l][o]) continue;
                bool fed = false, read = false;
                for (int i = 0; i < fin && !fed; ++i)
                    fed = kept(l, o, i) && (l == 0 || i >= fin_h || live[l - 1][size_t(i)]);
                for (int n = 0; n < shapes_io[l + 1].fan_out && !read; ++n) read = live[l + 1][n] && kept(l + 1, n, o);
                if (!fed || !read) live[l][o] = 0, changed = true;
            }
        }
    }
    // Appends neuron o of layer l with its kept weights; input_of maps an input to its index in
    // the packed layer (-1: dropped).
    auto append = [&](SparseLayer& layer, size_t l, int o, auto input_of) {
        const int fin = shapes_io[l].fan_in;
        const float scale = float(std::sqrt(6.0 / fin));
        for (int i = 0; i < fin; ++i) {
            const int input = kept(l, o, i) ? input_of(i) : -1;
            if (input < 0) continue;
            const size_t flat = size_t(o) * fin + i;
            const int32_t word = int32_t(philox_word0(seed, (uint64_t(l) << 32) | flat));
            layer.index.push_back(uint16_t(input));
            layer.value.push_back(float(word >> 8) * 1.1920928955078125e-07f * scale);
        }
        layer.start.push_back(uint32_t(layer.index.size()));
        ++layer.fan_out;
    };
    const std::array<SparseLayer*, 6> packed_layers = {&m.synth[0], &m.synth[1], &m.synth[2], &m.synth[3],
                                                        &m.synth0_x, &m.synth0_y};
    for (SparseLayer* layer : packed_layers) layer->start.assign(1, 0);
    // Layer 0 in three groups: both coordinates (inputs x, y), x alone (input x), y alone (input y).
    std::vector<int> position(size_t(shapes_io[0].fan_out), -1);  // previous layer's neuron -> input index
    auto group_of = [&](int o) { return kept(0, o, 0) && kept(0, o, 1) ? 0 : kept(0, o, 0) ? 1 : 2; };
    int packed = 0;
    for (int group = 0; group < 3; ++group)
        for (int o = 0; o < shapes_io[0].fan_out; ++o) {
            if (!live[0][o] || group_of(o) != group) continue;
            SparseLayer& layer = group == 0 ? m.synth[0] : group == 1 ? m.synth0_x : m.synth0_y;
            append(layer, 0, o, [&](int i) { return group == 2 ? 0 : i; });
            position[size_t(o)] = packed++;
        }
    for (size_t l = 1; l < layers; ++l) {
        const int fin_h = hidden_in(l), live_h = packed;
        std::vector<int> next_position(size_t(shapes_io[l].fan_out), -1);
        packed = 0;
        for (int o = 0; o < shapes_io[l].fan_out; ++o) {
            if (l + 1 < layers && !live[l][o]) continue;
            append(m.synth[l], l, o, [&](int i) { return i < fin_h ? position[size_t(i)] : i - fin_h + live_h; });
            next_position[size_t(o)] = packed++;
        }
        position = std::move(next_position);
    }
    for (SparseLayer* layer : packed_layers) layer->bias.assign(size_t(layer->fan_out), 0.0f);
}

SparseLayer dense_layer(int fan_out, int fan_in, const float* weight, const float* bias) {
    SparseLayer layer;
    layer.fan_out = fan_out;
    layer.start.push_back(0);
    for (int o = 0; o < fan_out; ++o) {
        for (int i = 0; i < fan_in; ++i) {
            layer.index.push_back(uint16_t(i));
            layer.value.push_back(weight[size_t(o) * fan_in + i]);
        }
        layer.start.push_back(uint32_t(layer.index.size()));
    }
    layer.bias = bias ? std::vector<float>(bias, bias + fan_out) : std::vector<float>(size_t(fan_out), 0.0f);
    return layer;
}

// The 3x3 conv's taps, then the skip: output o adds its own input channel (entry 9 mo + o) once.
SparseLayer residual_layer(int mo, const std::vector<float>& weight, const std::vector<float>& bias) {
    SparseLayer layer;
    layer.fan_out = mo;
    layer.bias = bias;
    layer.start.push_back(0);
    for (int o = 0; o < mo; ++o) {
        for (int i = 0; i < 9 * mo; ++i) {
            layer.index.push_back(uint16_t(i));
            layer.value.push_back(weight[size_t(o) * 9 * mo + i]);
        }
        layer.index.push_back(uint16_t(9 * mo + o));
        layer.value.push_back(1.0f);
        layer.start.push_back(uint32_t(layer.index.size()));
    }
    return layer;
}

// A grid's floats, row-major. Not value-initialised: every value is written before it is read, and
// a zero fill would touch every fresh page twice.
using Plane = std::unique_ptr<float[]>;

// Float buffers of the row pipeline start on a cache line, and pixel 0 of every row sits
// kRowLead floats in, so whole-vector loads of a chunk never straddle two lines (a 64-byte load
// one float off a line boundary reads two).
template <class T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
    bool operator==(const CacheLineAllocator&) const { return true; }
    bool operator!=(const CacheLineAllocator&) const { return false; }
};
using Floats = std::vector<float, CacheLineAllocator<float>>;
constexpr int kRowLead = 16;

// Row stride of every float row buffer (a multiple of a cache line): the replicated column each
// side (3x3 halo) at kRowLead - 1 and kRowLead + width, and kChunk floats of slack for
// whole-vector kernels. Pixel x of a row lives at row + kRowLead + x.
int row_stride(int width) { return (kRowLead + width + 1 + 15) / 16 * 16 + kChunk; }

void pad_row(float* row, int width) {
    row[kRowLead - 1] = row[kRowLead];
    row[kRowLead + width] = row[kRowLead + width - 1];
}

// Output row y (out_w values at out[0..]) of the 2x transposed conv of src (h x w). The source
// rows it reads are copied with T replicated columns each side, so every tap is a plain offset.
struct UpsampleScratch {
    std::vector<float> padded, phase;
};

// out[2j] = even[j], out[2j+1] = odd[j] for the out_w outputs, with the baseline vector unit of
// the target (SSE2 on x86-64, NEON on aarch64; both always present there).
void interleave(const float* even, const float* odd, int out_w, float* out) {
    int j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= out_w / 2; j += 4) {
        const __m128 e = _mm_loadu_ps(even + j), o = _mm_loadu_ps(odd + j);
        _mm_storeu_ps(out + 2 * j, _mm_unpacklo_ps(e, o));
        _mm_storeu_ps(out + 2 * j + 4, _mm_unpackhi_ps(e, o));
    }
#elif defined(__ARM_NEON)
    for (; j + 4 <= out_w / 2; j += 4) vst2q_f32(out + 2 * j, float32x4x2_t{{vld1q_f32(even + j), vld1q_f32(odd + j)}});
#endif
    for (; j < out_w / 2; ++j) out[2 * j] = even[j], out[2 * j + 1] = odd[j];
    if (out_w & 1) out[out_w - 1] = even[out_w / 2];
}

void upsample_row(const float* src, int h, int w, const FloatModel& m, int y, int out_w, float* out,
                  UpsampleScratch& scratch, const Kernels& kernels) {
    const int T = m.taps, P = T, a = y & 1, i = y >> 1;
    const size_t stride = size_t(w + 2 * P + kChunk);
    scratch.padded.resize(stride * T);
    const int half = out_w / 2 + 1 + kChunk;  // one column phase's outputs, then the other's
    scratch.phase.resize(size_t(2) * half);
    for (int p = 0; p < T; ++p) {
        const float* r = src + size_t(std::clamp(i + a - T / 2 + p, 0, h - 1)) * w;
        float* dst = scratch.padded.data() + size_t(p) * stride;
        std::fill(dst, dst + P, r[0]);
        std::copy(r, r + w, dst + P);
        std::fill(dst + P + w, dst + 2 * P + w, r[w - 1]);
    }
    const float* taps[144];
    for (int b = 0; b < 2; ++b) {
        const int count = (out_w - b + 1) / 2;  // outputs of this column phase
        for (int j0 = 0; j0 < count; j0 += kChunk) {
            for (int p = 0; p < T; ++p)
                for (int q = 0; q < T; ++q)
                    taps[p * T + q] = scratch.padded.data() + size_t(p) * stride + (j0 + b - T / 2 + q + P);
            float* dst = scratch.phase.data() + size_t(b) * half + j0;
            kernels.mac(taps, m.ups[a][b], &dst, std::min(kChunk, count - j0), Activation::kLinear);
        }
    }
    interleave(scratch.phase.data(), scratch.phase.data() + half, out_w, out);
}

// Seconds each thread spent per stage, summed.
struct StageTimes {
    std::atomic<int64_t> upsampling{0}, modulation{0}, synthesis{0};  // nanoseconds
};

struct StageClock {
    Clock::time_point t = Clock::now();
    void charge(std::atomic<int64_t>& to) {
        auto now = Clock::now();
        to += std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count();
        t = now;
    }
};

// Runs upsampling (last 2x step), modulation and synthesis for image rows [y0, y1), one row at a
// time with ring buffers: the 3x3 convs need o1 two rows ahead of the synthesis and o2 one row
// ahead, so a band only recomputes its first rows' halo. Nothing full-resolution is stored.
class BandPipeline {
public:
    BandPipeline(const FloatModel& m, const std::vector<Plane>& level1,
                 const std::vector<std::pair<int, int>>& shapes, const std::vector<int8_t>& grid0,
                 const Kernels& kernels, uint8_t* rgb)
        : m_(m), level1_(level1), shapes_(shapes), grid0_(grid0), k_(kernels), rgb_(rgb),
          stride_(row_stride(m.width)) {
        up_.assign(size_t(m.grids) * stride_, 0.0f);
        o0_.assign(size_t(kRing) * m.mod_width * stride_, 0.0f);
        o1_.assign(size_t(kRing) * m.mod_out * stride_, 0.0f);
        o2_.assign(size_t(kRing) * m.mod_out * stride_, 0.0f);
        o3_.assign(size_t(m.mod_out) * stride_, 0.0f);
        hidden_[0].assign(size_t(64) * kHiddenStride, 0.0f);
        hidden_[1].assign(size_t(64) * kHiddenStride, 0.0f);
        xcoord_.assign(size_t(m.width) + kChunk, 0.0f);
        ycoord_.assign(size_t(2) * kChunk, 0.0f);
        for (int x = 0; x < m.width; ++x)
            xcoord_[x] = m.width == 1 ? 0.0f : float(2 * x - (m.width - 1)) / float(m.width - 1);
        const int nx = m.synth0_x.fan_out;
        xplanes_.assign(size_t(nx) * stride_, 0.0f);
        yrows_.assign(size_t(m.synth0_y.fan_out) * kChunk, 0.0f);
        float* out[64];
        for (int x0 = 0; x0 < m.width; x0 += kChunk) {
            const float* in[1] = {xcoord_.data() + x0};
            for (int k = 0; k < nx; ++k) out[k] = xplanes_.data() + size_t(k) * stride_ + x0;
            k_.mac(in, m.synth0_x, out, std::min(kChunk, m.width - x0), Activation::kGelu);
        }
    }

    void run(int y0, int y1, StageTimes& times) {
        const int H = m_.height;
        int front_done = std::max(0, y0 - 2) - 1, o2_done = std::max(0, y0 - 1) - 1;
        StageClock clock;
        for (int y = y0; y < y1; ++y) {
            // o2 row r needs o1 rows r-1..r+1: advance the front only that far, so a ring of
            // four rows always holds what the next step reads.
            while (o2_done < std::min(H - 1, y + 1)) {
                while (front_done < std::min(H - 1, o2_done + 2)) front(++front_done, clock, times);
                ++o2_done;
                residual(o1_, m_.res2, o2_done, ring(o2_, o2_done, 0));
                clock.charge(times.modulation);
            }
            residual(o2_, m_.res3, y, o3_.data());
            clock.charge(times.modulation);
            synthesize(y);
            clock.charge(times.synthesis);
        }
    }

private:
    static constexpr int kRing = 4;
    // Floats from one hidden channel's chunk to the next: at a power of two (2 kChunk) the channels
    // would share a quarter of the L1 cache's sets; one line more spreads them (synthesis -10 %).
    static constexpr int kHiddenStride = kChunk + 16;

    float* ring(Floats& buf, int row, int channel) {
        const int channels = int(buf.size() / (size_t(kRing) * stride_));
        return buf.data() + (size_t(row % kRing) * channels + channel) * stride_;
    }

    // Upsampled grids, o0 and o1 of row r.
    void front(int r, StageClock& clock, StageTimes& times) {
        const int W = m_.width;
        for (int x = 0; x < W; ++x) up_[kRowLead + x] = float(grid0_[size_t(r) * W + x]);
        for (int l = 1; l < m_.grids; ++l)
            upsample_row(level1_[l].get(), shapes_[1].first, shapes_[1].second, m_, r, W,
                         up_.data() + size_t(l) * stride_ + kRowLead, scratch_, k_);
        clock.charge(times.upsampling);
        const float* in[64];
        float* out[64];
        for (int x0 = 0; x0 < W; x0 += kChunk) {
            const int n = std::min(kChunk, W - x0);
            for (int l = 0; l < m_.grids; ++l) in[l] = up_.data() + size_t(l) * stride_ + kRowLead + x0;
            for (int o = 0; o < m_.mod_width; ++o) out[o] = ring(o0_, r, o) + kRowLead + x0;
            k_.mac(in, m_.mod0, out, n, Activation::kGelu);
            for (int o = 0; o < m_.mod_width; ++o) in[o] = out[o];
            for (int o = 0; o < m_.mod_out; ++o) out[o] = ring(o1_, r, o) + kRowLead + x0;
            k_.mac(in, m_.mod1, out, n, Activation::kGelu);
        }
        for (int o = 0; o < m_.mod_out; ++o) pad_row(ring(o1_, r, o), W);
        clock.charge(times.modulation);
    }

    // dst row r (mod_out channels, stride_ apart) = GELU(bias + skip + 3x3 conv of src rows r-1..r+1).
    void residual(Floats& src, const SparseLayer& layer, int r, float* dst) {
        const int W = m_.width, H = m_.height, mo = m_.mod_out;
        const float* rows[3];
        const float* in[160];
        float* out[16];
        for (int x0 = 0; x0 < W; x0 += kChunk) {
            for (int ci = 0; ci < mo; ++ci) {
                for (int ky = 0; ky < 3; ++ky) rows[ky] = ring(src, std::clamp(r + ky - 1, 0, H - 1), ci) + kRowLead - 1 + x0;
                for (int ky = 0; ky < 3; ++ky)
                    for (int kx = 0; kx < 3; ++kx) in[(ci * 3 + ky) * 3 + kx] = rows[ky] + kx;
                in[9 * mo + ci] = rows[1] + 1;
            }
            for (int o = 0; o < mo; ++o) out[o] = dst + size_t(o) * stride_ + kRowLead + x0;
            k_.mac(in, layer, out, std::min(kChunk, W - x0), Activation::kGelu);
        }
        for (int o = 0; o < mo; ++o) pad_row(dst + size_t(o) * stride_, W);
    }

    void synthesize(int y) {
        const int W = m_.width, H = m_.height, mo = m_.mod_out, mw = m_.mod_width;
        std::fill(ycoord_.begin(), ycoord_.end(), H == 1 ? 0.0f : float(2 * y - (H - 1)) / float(H - 1));
        const int nx = m_.synth0_x.fan_out, ny = m_.synth0_y.fan_out;
        const float* in[256];
        float* out[64];
        for (int k = 0; k < ny; ++k) out[k] = yrows_.data() + size_t(k) * kChunk;
        in[0] = ycoord_.data();
        k_.mac(in, m_.synth0_y, out, kChunk, Activation::kGelu);
        for (int x0 = 0; x0 < W; x0 += kChunk) {
            const int n = std::min(kChunk, W - x0);
            in[0] = xcoord_.data() + x0;
            in[1] = ycoord_.data();
            for (int l = 0; l < 4; ++l) {
                int n_in = 2;
                if (l > 0) {
                    n_in = m_.synth[l - 1].fan_out;
                    for (int ch = 0; ch < n_in; ++ch) in[ch] = hidden_[(l - 1) & 1].data() + size_t(ch) * kHiddenStride;
                    if (l == 1) {
                        for (int k = 0; k < nx; ++k) in[n_in++] = xplanes_.data() + size_t(k) * stride_ + x0;
                        for (int k = 0; k < ny; ++k) in[n_in++] = yrows_.data() + size_t(k) * kChunk;
                    }
                    for (int ch = 0; ch < mo; ++ch) in[n_in++] = o3_.data() + size_t(ch) * stride_ + kRowLead + x0;
                    for (int ch = 0; ch < mo; ++ch) in[n_in++] = ring(o2_, y, ch) + kRowLead + x0;
                    if (l >= 2)
                        for (int ch = 0; ch < mo; ++ch) in[n_in++] = ring(o1_, y, ch) + kRowLead + x0;
                    if (l >= 3)
                        for (int ch = 0; ch < mw; ++ch) in[n_in++] = ring(o0_, y, ch) + kRowLead + x0;
                }
                for (int o = 0; o < m_.synth[l].fan_out; ++o) out[o] = hidden_[l & 1].data() + size_t(o) * kHiddenStride;
                k_.mac(in, m_.synth[l], out, n, l < 3 ? Activation::kGelu : Activation::kLinear);
            }
            const float* z[3] = {out[0], out[1], out[2]};
            k_.to_rgb8(z, n, rgb_ + (size_t(y) * W + x0) * 3);
        }
    }

    const FloatModel& m_;
    const std::vector<Plane>& level1_;
    const std::vector<std::pair<int, int>>& shapes_;
    const std::vector<int8_t>& grid0_;
    const Kernels& k_;
    uint8_t* rgb_;
    const int stride_;  // of every row buffer, x planes included
    Floats up_, o0_, o1_, o2_, o3_, hidden_[2], xcoord_, ycoord_, xplanes_, yrows_;
    UpsampleScratch scratch_;
};

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
    t.cum.assign(size_t(kMuSteps) * kScales * kRowStride, 0);
    t.mode.assign(size_t(kMuSteps) * kScales, 0);
    for (size_t table = 0; table < size_t(kMuSteps) * kScales; ++table) {
        uint64_t acc = 0;
        for (int s = 0; s < kSymbols; ++s) {
            t.cum[table * kRowStride + s] = uint32_t(acc);
            acc += uint64_t(weights[table * kSymbols + s]) + 1;
            if (weights[table * kSymbols + s] > weights[table * kSymbols + t.mode[table]]) t.mode[table] = int16_t(s);
        }
        if (acc != (uint64_t(1) << kPrecision)) throw std::invalid_argument("table frequencies do not sum to 2^24");
        t.cum[table * kRowStride + kSymbols] = uint32_t(acc);
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

Decoded decode(const uint8_t* data, size_t size, const Tables& tables, int threads, bool latents_only,
               const std::string& kernels_choice) {
    if (threads < 1) throw std::invalid_argument("threads must be at least 1");
    const Kernels& kernels = select_kernels(kernels_choice);
    auto t0 = Clock::now();
    if (size < 6) fail("file too short for a LotteryCodec header");
    if (std::memcmp(data, "LOTC", 4) != 0) fail("not a LotteryCodec file (bad magic)");
    if (data[4] != kVersion)
        fail("unsupported format version " + std::to_string(data[4]) + " (this decoder reads version " +
             std::to_string(kVersion) + ")");
    const size_t header_size = data[5];
    if (header_size < 10) fail("header size too small");
    if (size < header_size) fail("file truncated inside the header");
    const size_t header_body = header_size - 4;
    size_t at = 6;
    const uint64_t width64 = read_varint(data, header_body, at, 5), height64 = read_varint(data, header_body, at, 5);
    if (at + 2 > header_body) fail("header fields run past the header");
    const uint8_t channels = data[at], bit_depth = data[at + 1];
    at += 2;
    const uint64_t seed = read_varint(data, header_body, at, 10);
    Config c{};
    for (const auto& s : field_specs()) {
        const uint64_t v = read_varint(data, header_body, at, 5);
        if (v < uint64_t(s.range.lo) || v > uint64_t(s.range.hi))
            fail(std::string("config field ") + s.range.name + " outside its allowed range");
        c.*(s.member) = int64_t(v);
    }
    uint64_t section_size[3];
    for (auto& n : section_size) n = read_varint(data, header_body, at, 5);
    if (at != header_body) fail("header fields do not fill the header");
    if (crc32(data, header_body) != read_le(data + header_body, 4)) fail("header CRC mismatch (corrupted file)");
    if (channels != 3 || bit_depth != 8) fail("unsupported channels or bit depth (the format holds 3 at 8)");
    if (width64 < 1 || height64 < 1 || width64 > kMaxSide || height64 > kMaxSide || width64 * height64 > kMaxPixels)
        fail("image size outside 1..16384 per side, 2^26 pixels in all");
    const int width = int(width64), height = int(height64);
    if (c.ups_kernel_size % 2) fail("ups_kernel_size must be even");
    if (c.synth_mode == 1 && c.kept_weights) fail("a dense (synth_mode 1) synthesis has no mask: kept_weights must be 0");
    if (c.synth_mode == 1)
        fail("synth_mode 1 (trained dense synthesis, the lottery ablation) is decoded by the reference backend only");
    auto shapes_io = synth_in_out(c);
    int64_t total = 0;
    for (auto s : shapes_io) total += int64_t(s.fan_in) * s.fan_out;
    if (c.kept_weights > total) fail("kept_weights exceeds the synthesis weights");
    const uint64_t n_nets = section_size[0], n_mask = section_size[1], n_lat = section_size[2];
    const uint64_t expected = header_size + n_nets + n_mask + n_lat + 4;
    if (size < expected) fail("file truncated");
    if (size > expected) fail("trailing data after the payload");
    const uint8_t* payload = data + header_size;
    if (crc32(payload, size_t(n_nets + n_mask + n_lat)) != read_le(data + expected - 4, 4))
        fail("payload CRC mismatch (corrupted file)");

    Networks nets = read_networks(payload, size_t(n_nets), c, tables);
    const uint8_t* mask = payload + n_nets;
    at = 0;
    std::vector<int64_t> counts;
    int64_t kept = 0;
    for (int l = 0; l < 4; ++l) {
        counts.push_back(int64_t(read_varint(mask, size_t(n_mask), at, 5)));
        kept += counts.back();
    }
    if (kept != c.kept_weights) fail("mask keeps a different number of weights than the header says");
    auto mask_words = section_words(mask + at, size_t(n_mask) - at);
    const uint8_t* lat = mask + n_mask;
    auto plan = substream_plan(c, height, width);
    std::vector<uint64_t> sizes;
    at = 0;
    uint64_t total_words = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        sizes.push_back(read_varint(lat, size_t(n_lat), at, 5));
        total_words += sizes.back();
    }
    if (at + 4 * total_words != n_lat) fail("latent substream index does not match the latent section size");
    std::vector<std::vector<uint32_t>> substreams;
    size_t off = at;
    for (uint64_t s : sizes) {
        substreams.push_back(section_words(lat + off, size_t(4 * s)));
        off += size_t(4 * s);
    }
    auto masks = decode_mask(counts, mask_words.data(), mask_words.size(), shapes_io);
    // Kept weights packed once per image, per output neuron: work follows the mask.
    FloatModel m;
    m.width = width;
    m.height = height;
    m.grids = int(c.n_grids);
    m.taps = int(c.ups_kernel_size / 2);
    m.mod_width = int(c.mod_width);
    m.mod_out = int(c.mod_out);
    pack_synthesis(masks, shapes_io, seed, m);
    const auto& M = nets.mod;
    m.mod0 = dense_layer(m.mod_width, m.grids, M[0].data(), M[1].data());
    m.mod1 = dense_layer(m.mod_out, m.mod_width, M[2].data(), M[3].data());
    m.res2 = residual_layer(m.mod_out, M[4], M[5]);
    m.res3 = residual_layer(m.mod_out, M[6], M[7]);
    const int T = m.taps;
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
            m.ups[a][b] = dense_layer(1, T * T, nets.ups.data() + size_t(a * 2 + b) * T * T, nullptr);

    Decoded out;
    out.width = width;
    out.height = height;
    out.kernels = kernels.name;
    out.t_parse = seconds_since(t0);

    // The upsampling cascade: every grid up to half resolution (small: a quarter of the pixels per
    // grid), level by level from the coarsest, serially (it runs beside grid 0's entropy decoding);
    // the last 2x step runs inside the row bands.
    const auto& shapes = out.grid_shapes;
    std::vector<Plane> level1(size_t(m.grids));
    double cascade_seconds = 0;
    auto cascade = [&] {
        const auto t = Clock::now();
        for (int l = 1; l < m.grids; ++l) {
            level1[l].reset(new float[out.latents[l].size()]);
            std::copy(out.latents[l].begin(), out.latents[l].end(), level1[l].get());
        }
        UpsampleScratch scratch;
        for (int level = m.grids - 2; level >= 1; --level) {
            const auto [h, w] = shapes[level + 1];
            const auto [out_h, out_w] = shapes[level];
            for (int l = level + 1; l < m.grids; ++l) {  // grids level + 1.. are at level + 1
                Plane next(new float[size_t(out_h) * out_w]);
                for (int r = 0; r < out_h; ++r)
                    upsample_row(level1[l].get(), h, w, m, r, out_w, next.get() + size_t(r) * out_w, scratch, kernels);
                level1[l] = std::move(next);
            }
        }
        // The output's pages are first touched here too, off the critical path (a page fault costs
        // microseconds on a VM).
        out.rgb.assign(size_t(height) * width * 3, 0);
        cascade_seconds = seconds_since(t);
    };

    auto t1 = Clock::now();
    WorkerPool pool(threads);
    const double substream_seconds = decode_latents(substreams, nets, c, height, width, tables, out, pool, kernels,
                                                    latents_only ? std::function<void()>() : cascade);
    const double entropy_and_cascade = seconds_since(t1);
    out.t_entropy = entropy_and_cascade * substream_seconds / (substream_seconds + cascade_seconds + 1e-12);
    if (latents_only) return out;
    const double cascade_share = entropy_and_cascade - out.t_entropy;

    // Row bands: one per thread, or a few per thread for balance (each band recomputes 2 halo rows).
    auto t3 = Clock::now();
    const int bands = threads == 1 ? 1 : std::min(height, 4 * threads);
    const int band_rows = (height + bands - 1) / bands;
    StageTimes times;
    // One pipeline (ring buffers, scratch) per thread, reused from band to band.
    std::vector<std::unique_ptr<BandPipeline>> pipelines(size_t(pool.size()));
    pool.run((height + band_rows - 1) / band_rows, [&](int band, int worker) {
        auto& pipeline = pipelines[size_t(worker)];
        if (!pipeline) pipeline = std::make_unique<BandPipeline>(m, level1, shapes, out.latents[0], kernels, out.rgb.data());
        pipeline->run(band * band_rows, std::min(height, (band + 1) * band_rows), times);
    });
    // The fused stages share one wall-clock span; split it by the threads' time in each stage.
    const double fused = seconds_since(t3);
    const double spent = double(times.upsampling + times.modulation + times.synthesis) + 1e-9;
    out.t_upsampling = cascade_share + fused * double(times.upsampling) / spent;
    out.t_modulation = fused * double(times.modulation) / spent;
    out.t_synthesis = fused * double(times.synthesis) / spent;
    return out;
}

}  // namespace lotc

namespace lotc {
const char* kernels_name(const std::string& kernels) { return select_kernels(kernels).name; }

std::vector<std::string> available_kernels() {
    std::vector<std::string> names;
    for (const Kernels* k : {avx512_kernels(), avx2_kernels(), neon_kernels(), &scalar_kernels()})
        if (k) names.push_back(k->name);
    return names;
}
}  // namespace lotc
