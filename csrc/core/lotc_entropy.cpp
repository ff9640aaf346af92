// Stage "decode_latents" (docs/FORMAT.md 6): the integer ARM, the tables and the range decoder,
// substreams in parallel; and the mask section (7). Twin of decoder/entropy.py.
#include "lotc_entropy.h"

#include "lotc_range_decoder.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace lotc::detail {

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

namespace {

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

// Inter-grid inputs (docs/FORMAT.md 6.2): the upsampled parent read at (y + dy, x + dx).
constexpr int kParentOffsets[9][2] = {{0, 0}, {0, 1}, {1, 0}, {0, -1}, {-1, 0}, {1, 1}, {1, -1}, {-1, 1}, {-1, -1}};

// Tables up to this scale index (scale 2^(-4 + i/4) < 2) are searched by walking from the mode.
constexpr int kWalkMaxScaleIndex = 20;

// How one latent is coded: its centre, the frequency table's row and the symbol search's start.
struct Coding {
    int32_t centre, row, start;
};

// A memo entry: the coding an ARM context's latents (packed one byte each) map to.
struct ArmMemo {
    uint64_t key[2];  // all zero (the all-zero context, never looked up): an empty slot
    Coding coding;
};
constexpr int kMemoBits = 12, kMemoContext = 16;

// One worker's buffers, kept from substream to substream of a decode, so the memo (128 KiB) is
// allocated and cleared once per worker rather than per substream; and it stays valid across
// substreams: it depends on the ARM alone, the same for the whole file.
struct CursorScratch {
    std::vector<int32_t> buf, x, parent_buf;
    std::vector<ArmMemo> memo;
};

// One substream's decoding state; per latent: context -> ARM (or memo) -> table -> range decoder
// -> value.
class LatentCursor {
public:
    LatentCursor(const std::vector<uint32_t>& words, const std::vector<Unit>& units, const Config& c,
                 const Networks& n, const Tables& tables, const Kernels& kernels, const int32_t zero_mu_ls[2],
                 Decoded& out, CursorScratch& scratch)
        : dec_(words.data(), words.size()), units_(units), n_(n), tables_(tables), kernels_(kernels), out_(out),
          bound_(int(c.latent_bound)), frac_(int(c.arm_frac_bits)), context_size_(int(c.arm_context)),
          parents_(int(c.arm_parents)), n_grids_(int(c.n_grids)), zero_coding_(coding_of(zero_mu_ls)),
          buf_(scratch.buf), x_(scratch.x), parent_buf_(scratch.parent_buf), memo_(scratch.memo) {
        x_.resize(size_t(std::max(int(c.arm_inputs()), kArmMaxWidth)), 0);
        offsets_.assign(size_t(std::max(context_size_, kMemoContext)), 0);
        // The memo and the small-ARM kernel key on the spatial context alone: not with parents.
        if (context_size_ <= kMemoContext && !parents_ && memo_.empty())
            memo_.assign(size_t(1) << kMemoBits, ArmMemo{{0, 0}, {0, 0, 0}});
        const bool small = context_size_ <= 8 && std::all_of(n.arm.begin(), n.arm.end(), [](const ArmLayer& l) {
            return l.fan_in <= kArmLanes && l.padded_out == kArmLanes;
        });
        if (small && !parents_) arm_small_ = kernels.arm_small;
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
            if (parents_) {
                const ptrdiff_t ppitch = width + 2;
                for (int yy = 0; yy < rows; ++yy) {
                    int32_t* const row = buf + (yy + 4) * pitch + 4;
                    const int32_t* const prow = parent_buf_.data() + (yy + 1) * ppitch + 1;
                    for (int xx = 0; xx < width; ++xx) row[xx] = decode_with_parents(dec, row + xx, offsets, prow + xx);
                }
            } else {
                for (int yy = 0; yy < rows; ++yy) {
                    int32_t* const row = buf + (yy + 4) * pitch + 4;
                    for (int xx = 0; xx < width; ++xx) row[xx] = decode_one(dec, row + xx, offsets);
                }
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
                        if (n_.arm_stabiliser.fan_in) {
                            int32_t* const x = x_.data();
                            for (int k = 0; k < n; ++k) x[k] = here[-offsets[k]] * (1 << kActFrac);
                            add_arm_stabiliser(n_.arm_stabiliser, x, frac_, mu_ls);
                        }
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

    // The latent at `here` with the ARM's inputs extended by the parent features around `parent`
    // (the unit's parent buffer, already in ARM units). No memo: the key would be too wide.
    int32_t decode_with_parents(RangeDecoder& dec, const int32_t* const here, const ptrdiff_t* const offsets,
                                const int32_t* const parent) {
        const int n = context_size_;
        int32_t* const x = x_.data();
        int32_t any = 0;
        for (int k = 0; k < n; ++k) any |= (x[k] = here[-offsets[k]] * (1 << kActFrac));
        for (int k = 0; k < parents_; ++k) any |= (x[n + k] = parent[parent_offsets_[k]]);
        const Coding coding = any ? arm_coding(x) : zero_coding_;
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
        if (n_.arm_stabiliser.fan_in) add_arm_stabiliser(n_.arm_stabiliser, x, frac_, mu_ls);
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
        // The decoded latents, with a zero border that stands for "outside". The interior needs
        // no clearing (each cell is written before any later latent's context reads it) unless the
        // memo's whole-word key reads the current cell for unused offsets: contexts of 0-7 and 9-15.
        const size_t cells = size_t(rows_ + 4) * pitch_;
        if ((context_size_ <= kMemoContext && context_size_ % 8 != 0) || context_size_ == 0) {
            buf_.assign(cells, 0);
        } else {
            buf_.resize(cells);
            std::fill(buf_.begin(), buf_.begin() + 4 * pitch_, 0);
            for (int yy = 4; yy < rows_ + 4; ++yy) {
                int32_t* const row = buf_.data() + size_t(yy) * pitch_;
                std::fill(row, row + 4, 0);
                std::fill(row + 4 + width_, row + pitch_, 0);
            }
        }
        if (parents_) open_parents();
    }

    // The unit's parent features (docs/FORMAT.md 6.2) for rows row0 - 1 .. row1 and columns -1 .. w:
    // 16 x the next coarser grid upsampled 2x bilinearly, shifted to ARM units, 0 outside the grid
    // and for the coarsest grid. That grid is complete: decode_latents orders and waits for it.
    void open_parents() {
        const Unit& u = units_[unit_];
        const ptrdiff_t ppitch = width_ + 2;
        parent_buf_.assign(size_t(rows_ + 2) * ppitch, 0);
        for (int k = 0; k < parents_; ++k) parent_offsets_[k] = kParentOffsets[k][0] * ppitch + kParentOffsets[k][1];
        if (u.grid + 1 >= n_grids_) return;
        const auto [ph, pw] = out_.grid_shapes[size_t(u.grid) + 1];
        const int h = out_.grid_shapes[size_t(u.grid)].first;
        const int8_t* const p = out_.latents[size_t(u.grid) + 1].data();
        auto far = [](int y, int size) { return std::clamp(y & 1 ? (y >> 1) + 1 : (y >> 1) - 1, 0, size - 1); };
        for (int y = std::max(u.row0 - 1, 0); y < std::min(u.row1 + 1, h); ++y) {
            const int8_t* const near_row = p + size_t(y >> 1) * pw;
            const int8_t* const far_row = p + size_t(far(y, ph)) * pw;
            int32_t* const out = parent_buf_.data() + (y - u.row0 + 1) * ppitch + 1;
            for (int x = 0; x < width_; ++x) {
                const int xn = x >> 1, xf = far(x, pw);
                const int32_t r_near = 3 * near_row[xn] + far_row[xn], r_far = 3 * near_row[xf] + far_row[xf];
                out[x] = (3 * r_near + r_far) * (1 << (kActFrac - 4));
            }
        }
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
    const int bound_, frac_, context_size_, parents_, n_grids_;
    const Coding zero_coding_;
    decltype(Kernels::arm_small) arm_small_ = nullptr;  // set when the network and the table allow it
    size_t unit_ = 0;
    int width_ = 0, rows_ = 0, pitch_ = 0;
    std::vector<int32_t>&buf_, &x_, &parent_buf_;
    std::vector<ArmMemo>& memo_;  // only for contexts of at most kMemoContext
    ptrdiff_t parent_offsets_[9] = {};
    std::vector<ptrdiff_t> offsets_;
};

}  // namespace

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
    if (n.arm_stabiliser.fan_in) add_arm_stabiliser(n.arm_stabiliser, zero_context.data(), int(c.arm_frac_bits), zero_mu_ls);
    // Substreams holding a coarse grid first, then `coarse`, then grid 0's; largest first within each
    // group, so threads finish together. (Stepping several substreams in turn on one thread did not
    // help: the decoding is throughput-bound, not latency-bound.) With parent inputs, from the coarsest
    // grid to the finest (a substream's coarsest grid decides), so that every substream's parents are
    // handed out before it: the pool takes items in order, and a waiting item only waits for earlier ones.
    std::vector<char> holds_coarse(plan.size());
    std::vector<int> top_grid(plan.size(), 0);
    for (size_t s = 0; s < plan.size(); ++s) {
        holds_coarse[s] = std::any_of(plan[s].begin(), plan[s].end(), [](const Unit& u) { return u.grid > 0; });
        for (const Unit& u : plan[s]) top_grid[s] = std::max(top_grid[s], u.grid);
    }
    const bool parents = c.arm_parents > 0;
    constexpr int kCoarse = -1;
    std::vector<int> items(plan.size());  // substream indices, and kCoarse for `coarse`
    for (size_t s = 0; s < items.size(); ++s) items[s] = int(s);
    std::stable_sort(items.begin(), items.end(), [&](int a, int b) {
        if (holds_coarse[a] != holds_coarse[b]) return bool(holds_coarse[a]);
        if (parents && top_grid[a] != top_grid[b]) return top_grid[a] > top_grid[b];
        return symbols[a] > symbols[b];
    });
    // Per grid, the substreams still decoding it; a substream waits for its grids' parents (those
    // of its own it decodes itself, in order: the shared one holds its grids coarsest first).
    std::vector<std::atomic<int>> pending(size_t(c.n_grids) + 1);
    for (auto& p : pending) p.store(0);
    std::vector<std::vector<int>> waits_for(plan.size());
    for (size_t s = 0; s < plan.size(); ++s)
        for (const Unit& u : plan[s]) {
            ++pending[size_t(u.grid)];
            const int parent = u.grid + 1;
            const bool own = std::any_of(plan[s].begin(), plan[s].end(), [&](const Unit& v) { return v.grid == parent; });
            if (parents && parent < c.n_grids && !own &&
                std::find(waits_for[s].begin(), waits_for[s].end(), parent) == waits_for[s].end())
                waits_for[s].push_back(parent);
        }
    const int coarse_inputs = int(std::count(holds_coarse.begin(), holds_coarse.end(), 1));
    if (coarse) items.insert(items.begin() + coarse_inputs, kCoarse);
    std::atomic<int> inputs_left{coarse_inputs};
    std::atomic<bool> failed{false};
    std::atomic<int64_t> substream_ns{0};
    std::vector<CursorScratch> scratch(size_t(pool.size()));
    pool.run(int(items.size()), [&](int i, int worker) {
        const int s = items[size_t(i)];
        if (s == kCoarse) {
            // Taken only after every input was handed out: at most threads - 1 are still running.
            while (inputs_left.load() > 0)
                if (failed.load()) return;
                else std::this_thread::yield();
            coarse();
            return;
        }
        for (int g : waits_for[size_t(s)])
            while (pending[size_t(g)].load() > 0)
                if (failed.load()) return;
                else std::this_thread::yield();
        const auto t = Clock::now();
        try {
            LatentCursor cursor(substreams[s], plan[s], c, n, tables, kernels, zero_mu_ls, out, scratch[size_t(worker)]);
            cursor.run();
        } catch (...) {
            failed = true;
            throw;
        }
        for (const Unit& u : plan[size_t(s)]) --pending[size_t(u.grid)];
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

}  // namespace lotc::detail
