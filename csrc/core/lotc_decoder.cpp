// The decoder's entry point, a port of decoder/reference.py decode() (docs/FORMAT.md): read the
// bitstream -> read the networks -> the synthesis's kept weights -> decode the latents -> reconstruct,
// each a named call into the stage's own source file. Every size is checked against the bytes
// present before anything is allocated; errors throw DecodeError.
#include "lotc_decoder.h"

#include "lotc_entropy.h"
#include "lotc_internal.h"
#include "lotc_kernels.h"
#include "lotc_model.h"
#include "lotc_networks.h"
#include "lotc_pool.h"

#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <fstream>
#include <iterator>
#include <memory>

namespace lotc {
namespace detail {
namespace {

// A file's header, checked, and its sections as words (docs/FORMAT.md 1-3, 5-7).
struct Bitstream {
    int version = 0, width = 0, height = 0;
    uint64_t seed = 0;
    Config c{};
    const uint8_t* networks = nullptr;
    size_t networks_size = 0;
    std::vector<int64_t> mask_counts;
    std::vector<uint32_t> mask_words;
    std::vector<std::vector<uint32_t>> substreams;
};

// Stage "read_bitstream": magic, version, header fields and ranges, both CRCs, section sizes.
Bitstream read_bitstream(const uint8_t* data, size_t size) {
    Bitstream bs;
    if (size < 6) fail("file too short for a LotteryCodec header");
    if (std::memcmp(data, "LOTC", 4) != 0) fail("not a LotteryCodec file (bad magic)");
    const int version = data[4];
    if (version < kVersionMin || version > kVersionMax)
        fail("unsupported format version " + std::to_string(version) + " (this decoder reads versions 2, 3, 4)");
    bs.version = version;
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
    const auto& specs = field_specs();
    // Versions 2 and 3 list every field they carry; version 4 a bit set of the fields sent, the others
    // holding their defaults.
    const bool compact = version >= kCompactConfigVersion;
    const uint64_t present = compact ? read_varint(data, header_body, at, 5) : 0;
    if (present >> specs.size()) fail("config bit set names fields beyond those there are");
    for (size_t i = 0; i < specs.size(); ++i) {
        const auto& s = specs[i];
        if (!compact && s.range.since > version) continue;  // absent: 0, value-initialised above
        const bool sent = !compact || (present >> i & 1);
        const uint64_t v = sent ? read_varint(data, header_body, at, 5) : uint64_t(s.range.def);
        // One way to write each file: version 4 leaves out a field that holds its default.
        if (compact && sent && v == uint64_t(s.range.def))
            fail(std::string("config field ") + s.range.name + " sent with its default value");
        if (v < uint64_t(s.range.lo) || v > uint64_t(s.range.hi))
            fail(std::string("config field ") + s.range.name + " outside its allowed range");
        c.*(s.member) = int64_t(v);
    }
    // One way to write each file: versions 2 and 3 each hold one kind of configuration.
    if (!compact && (version == 3) != (c.arm_parents != 0))
        fail("a version " + std::to_string(version) + " header for a configuration of version " +
             std::to_string(c.arm_parents ? 3 : 2));
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
    // One way to write each file (decoder/config.py ArchConfig.validate): the ARM options only where
    // they change the computation.
    if (c.arm_residual && (!c.arm_layers || c.arm_width != c.arm_inputs()))
        fail("arm_residual needs hidden layers as wide as the ARM's inputs");
    if (c.arm_stabiliser && (!c.arm_layers || !c.arm_inputs()))
        fail("arm_stabiliser needs ARM inputs and hidden layers");
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
    bs.width = width;
    bs.height = height;
    bs.seed = seed;
    bs.c = c;
    bs.networks = payload;
    bs.networks_size = size_t(n_nets);
    const uint8_t* mask = payload + n_nets;
    at = 0;
    int64_t kept = 0;
    for (int l = 0; l < 4; ++l) {
        bs.mask_counts.push_back(int64_t(read_varint(mask, size_t(n_mask), at, 5)));
        kept += bs.mask_counts.back();
    }
    if (kept != c.kept_weights) fail("mask keeps a different number of weights than the header says");
    bs.mask_words = section_words(mask + at, size_t(n_mask) - at);
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
    size_t off = at;
    for (uint64_t s : sizes) {
        bs.substreams.push_back(section_words(lat + off, size_t(4 * s)));
        off += size_t(4 * s);
    }
    return bs;
}

// Stage "synthesis_layers" and the float networks: the mask's kept weights (live neurons only),
// the modulation and the upsampling kernel as kernel-ready layers.
FloatModel float_model(const Bitstream& bs, const Networks& nets) {
    const Config& c = bs.c;
    FloatModel m;
    m.width = bs.width;
    m.height = bs.height;
    m.grids = int(c.n_grids);
    m.taps = int(c.ups_kernel_size / 2);
    m.mod_width = int(c.mod_width);
    m.mod_out = int(c.mod_out);
    const auto shapes_io = synth_in_out(c);
    pack_synthesis(decode_mask(bs.mask_counts, bs.mask_words.data(), bs.mask_words.size(), shapes_io), shapes_io,
                   bs.seed, m);
    const auto& M = nets.mod;
    m.mod0 = dense_layer(m.mod_width, m.grids, M[0].data(), M[1].data());
    m.mod1 = dense_layer(m.mod_out, m.mod_width, M[2].data(), M[3].data());
    m.res2 = residual_layer(m.mod_out, M[4], M[5]);
    m.res3 = residual_layer(m.mod_out, M[6], M[7]);
    const int T = m.taps;
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
            m.ups[a][b] = dense_layer(1, T * T, nets.ups.data() + size_t(a * 2 + b) * T * T, nullptr);
    return m;
}

// Stage "reconstruct": the last upsampling step, modulation and synthesis over row bands, one
// band per thread or a few per thread for balance (each band recomputes 2 halo rows). The fused
// stages share one wall-clock span, split by the threads' time in each.
void reconstruct(const FloatModel& m, const Level1& level1, Decoded& out, WorkerPool& pool,
                 const Kernels& kernels, int threads, uint8_t* rgb, size_t rgb_stride) {
    const auto t = Clock::now();
    const int height = m.height;
    const int bands = threads == 1 ? 1 : std::min(height, 4 * threads);
    const int band_rows = (height + bands - 1) / bands;
    StageTimes times;
    // One pipeline (ring buffers, scratch) per thread, reused from band to band.
    std::vector<std::unique_ptr<Bands>> pipelines(size_t(pool.size()));
    pool.run((height + band_rows - 1) / band_rows, [&](int band, int worker) {
        auto& pipeline = pipelines[size_t(worker)];
        if (!pipeline)
            pipeline = std::make_unique<Bands>(m, level1, out.grid_shapes, out.latents[0], kernels, rgb, rgb_stride);
        pipeline->run(band * band_rows, std::min(height, (band + 1) * band_rows), times);
    });
    const double fused = seconds_since(t);
    const double spent = double(times.upsampling + times.modulation + times.synthesis) + 1e-9;
    out.t_upsampling += fused * double(times.upsampling) / spent;
    out.t_modulation = fused * double(times.modulation) / spent;
    out.t_synthesis = fused * double(times.synthesis) / spent;
}

}  // namespace
}  // namespace detail

using namespace detail;

namespace {
constexpr size_t kLargeMin = size_t(1) << 20, kHugePage = size_t(2) << 20;
}

void* large_allocate(size_t bytes) {
    if (bytes < kLargeMin) return ::operator new(bytes, std::align_val_t(64));
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = ::operator new(rounded, std::align_val_t(kHugePage));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP the pages stay 4 KiB
#endif
    return p;
}

void large_free(void* p, size_t bytes) {
    ::operator delete(p, std::align_val_t(bytes < kLargeMin ? 64 : kHugePage));
}

const std::vector<FieldRange>& config_fields() {
    static const std::vector<FieldRange> fields = [] {
        std::vector<FieldRange> f;
        for (const auto& s : field_specs()) f.push_back(s.range);
        return f;
    }();
    return fields;
}

namespace {
// The cumulative tables and modes from weight(i), the shipped (8, 48, 255) array's entry i.
template <class Weight>
Tables build_tables(const Weight& weight) {
    Tables t;
    t.cum.resize(size_t(kMuSteps) * kScales * Tables::kRowStride);
    t.mode.assign(size_t(kMuSteps) * kScales, 0);
    for (size_t table = 0; table < size_t(kMuSteps) * kScales; ++table) {
        uint32_t* const cum = t.cum.data() + table * Tables::kRowStride;
        uint64_t acc = 0;
        uint32_t best = 0;
        for (int s = 0; s < kSymbols; ++s) {
            const uint32_t w = weight(table * kSymbols + size_t(s));
            cum[s] = uint32_t(acc);
            acc += uint64_t(w) + 1;
            if (w > best) best = w, t.mode[table] = int16_t(s);
        }
        if (acc != (uint64_t(1) << kPrecision)) throw std::invalid_argument("table frequencies do not sum to 2^24");
        std::fill(cum + kSymbols, cum + Tables::kRowStride, uint32_t(acc));
    }
    return t;
}
}  // namespace

Tables Tables::from_weights(const uint32_t* weights, size_t count) {
    if (count != size_t(kMuSteps) * kScales * kSymbols) throw std::invalid_argument("tables have the wrong size");
    return build_tables([weights](size_t i) { return weights[i]; });
}

Tables Tables::from_npy_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open frequency tables " + path);
    std::vector<uint8_t> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return from_npy_bytes(raw.data(), raw.size());
}

Tables Tables::from_npy_bytes(const uint8_t* raw, size_t size) {
    if (size < 10 || crc32(raw, size) != kTablesCrc) throw std::runtime_error("not the pinned frequency tables");
    const size_t header = 10 + read_le(&raw[8], 2);
    if (size < header || (size - header) / 4 != size_t(kMuSteps) * kScales * kSymbols)
        throw std::invalid_argument("tables have the wrong size");
    // Read in place: no copy of the 392 KB array (its fresh pages were a third of the set-up).
    return build_tables([data = raw + header](size_t i) { return uint32_t(read_le(data + 4 * i, 4)); });
}

Info probe(const uint8_t* data, size_t size) {
    const Bitstream bs = read_bitstream(data, size);
    const Config& c = bs.c;
    Info info;
    info.version = bs.version;
    info.width = bs.width;
    info.height = bs.height;
    info.n_grids = int(c.n_grids);
    const auto shapes = grid_shapes(c, bs.height, bs.width);
    for (auto [h, w] : shapes) info.latent_count += uint64_t(h) * w;
    // decoder/complexity.py lottery_complexity: one MAC per weight use, the ARM per latent.
    const double pixels = double(bs.height) * bs.width;
    int64_t arm = 0, in = c.arm_inputs();
    for (int l = 0; l < c.arm_layers; ++l) arm += in * c.arm_width, in = c.arm_width;
    arm += in * 2 + (c.arm_stabiliser ? c.arm_inputs() * 2 : 0);
    const int64_t taps = c.ups_kernel_size / 2;
    double ups = 0;
    for (int lvl = int(shapes.size()) - 2; lvl >= 0; --lvl)
        ups += double(shapes.size() - 1 - lvl) * double(taps * taps) * shapes[lvl].first * shapes[lvl].second;
    const int64_t mod = c.n_grids * c.mod_width + c.mod_width * c.mod_out + 2 * 9 * c.mod_out * c.mod_out;
    int64_t synth = 0;
    for (auto l : synth_in_out(c)) synth += int64_t(l.fan_in) * l.fan_out;
    info.kept_ratio = double(c.kept_weights) / double(synth);
    double parents = 0;  // the parents' bilinear 2x: 4 per latent of every grid but the coarsest
    if (c.arm_parents)
        for (size_t g = 0; g + 1 < shapes.size(); ++g) parents += 4.0 * shapes[g].first * shapes[g].second;
    info.macs_per_pixel = double(arm) * double(info.latent_count) / pixels + ups / pixels + parents / pixels + double(mod) +
                          double(c.synth_mode == 1 ? synth : c.kept_weights);
    return info;
}

Decoded decode(const uint8_t* data, size_t size, const Tables& tables, int threads, bool latents_only,
               const std::string& kernels_choice, uint64_t max_pixels, uint8_t* rgb, size_t rgb_stride) {
    if (threads < 1) throw std::invalid_argument("threads must be at least 1");
    const Kernels& kernels = select_kernels(kernels_choice);
    const auto t0 = Clock::now();
    const Bitstream bs = read_bitstream(data, size);
    if (max_pixels && uint64_t(bs.width) * uint64_t(bs.height) > max_pixels)
        throw LimitError("the image has " + std::to_string(uint64_t(bs.width) * uint64_t(bs.height)) +
                         " pixels, above the caller's limit of " + std::to_string(max_pixels));
    const Networks nets = read_networks(bs.networks, bs.networks_size, bs.c, tables);
    const FloatModel m = float_model(bs, nets);
    Decoded out;
    out.width = bs.width;
    out.height = bs.height;
    out.kernels = kernels.name;
    out.t_parse = seconds_since(t0);

    // Every grid but the finest is brought to half resolution as soon as those grids are decoded,
    // on one thread beside grid 0's entropy decoding (small: a quarter of the pixels per grid).
    Level1 level1;
    double cascade_seconds = 0;
    auto cascade = [&] {
        const auto t = Clock::now();
        upsample_cascade(m, out.latents, out.grid_shapes, kernels, level1);
        // The output's pages are first touched here too, off the critical path (a page fault costs
        // microseconds on a VM).
        if (!rgb) out.rgb.assign(size_t(bs.height) * bs.width * 3, 0);
        cascade_seconds = seconds_since(t);
    };
    const auto t1 = Clock::now();
    WorkerPool pool(threads);
    const double substream_seconds = decode_latents(bs.substreams, nets, bs.c, bs.height, bs.width, tables, out, pool,
                                                    kernels, latents_only ? std::function<void()>() : cascade);
    const double entropy_and_cascade = seconds_since(t1);
    out.t_entropy = entropy_and_cascade * substream_seconds / (substream_seconds + cascade_seconds + 1e-12);
    if (latents_only) return out;
    out.t_upsampling = entropy_and_cascade - out.t_entropy;  // the cascade's share
    if (!rgb) rgb = out.rgb.data(), rgb_stride = size_t(bs.width) * 3;
    reconstruct(m, level1, out, pool, kernels, threads, rgb, rgb_stride);
    return out;
}

const char* kernels_name(const std::string& kernels) { return select_kernels(kernels).name; }

std::vector<std::string> available_kernels() {
    std::vector<std::string> names;
    for (const Kernels* k : {avx512_kernels(), avx2_kernels(), neon_kernels(), &scalar_kernels()})
        if (k) names.push_back(k->name);
    return names;
}

}  // namespace lotc
