// Stages "modulate" and "synthesize" (docs/FORMAT.md 8), fused with the last upsampling step
// over row bands: nothing full-resolution is stored.
#include "lotc_model.h"

#include <algorithm>
#include <chrono>

namespace lotc::detail {

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
    BandPipeline(const FloatModel& m, const Level1& level1, const std::vector<std::pair<int, int>>& shapes,
                 const std::vector<int8_t>& grid0, const Kernels& kernels, uint8_t* rgb, size_t rgb_stride)
        : m_(m), level1_(level1), shapes_(shapes), grid0_(grid0), k_(kernels), rgb_(rgb), rgb_stride_(rgb_stride),
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
            upsample_row(level1_.planes[size_t(l)], shapes_[1].first, shapes_[1].second, m_, r, W,
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
            k_.to_rgb8(z, n, rgb_ + size_t(y) * rgb_stride_ + size_t(x0) * 3);
        }
    }

    const FloatModel& m_;
    const Level1& level1_;
    const std::vector<std::pair<int, int>>& shapes_;
    const std::vector<int8_t>& grid0_;
    const Kernels& k_;
    uint8_t* rgb_;
    const size_t rgb_stride_;
    const int stride_;  // of every row buffer, x planes included
    Floats up_, o0_, o1_, o2_, o3_, hidden_[2], xcoord_, ycoord_, xplanes_, yrows_;
    UpsampleScratch scratch_;
};

Bands::Bands(const FloatModel& m, const Level1& level1, const std::vector<std::pair<int, int>>& shapes,
             const std::vector<int8_t>& grid0, const Kernels& kernels, uint8_t* rgb, size_t rgb_stride)
    : pipeline(std::make_unique<BandPipeline>(m, level1, shapes, grid0, kernels, rgb, rgb_stride)) {}
Bands::~Bands() = default;
void Bands::run(int y0, int y1, StageTimes& times) { pipeline->run(y0, y1, times); }

}  // namespace lotc::detail
