// The float side of the decoder as kernel-ready layers (built once per image), and the row
// buffers the upsampling and the band pipeline share.
#pragma once

#include "lotc_internal.h"
#include "lotc_kernels.h"

#include <atomic>
#include <memory>
#include <new>

namespace lotc::detail {

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

// Stage "synthesis_layers": the kept weights of the live neurons (the reference's
// synthesis_layers and live_neurons) packed per output neuron, so work follows the mask.
void pack_synthesis(const std::vector<std::vector<uint8_t>>& masks, const std::vector<LayerShape>& shapes_io,
                    uint64_t seed, FloatModel& m);
SparseLayer dense_layer(int fan_out, int fan_in, const float* weight, const float* bias);
// The 3x3 conv's taps, then the skip: output o adds its own input channel (entry 9 mo + o) once.
SparseLayer residual_layer(int mo, const std::vector<float>& weight, const std::vector<float>& bias);

// A grid's floats, row-major. Not value-initialised: every value is written before it is read, and
// a zero fill would touch every fresh page twice.
using Plane = std::unique_ptr<float[]>;
// Every grid l >= 1 at half resolution: planes[l] (planes[0] unused), all in one large buffer.
struct Level1 {
    std::vector<float, LargeAllocator<float>> arena;
    std::vector<const float*> planes;
};

// Float buffers of the row pipeline start on a cache line (LargeAllocator aligns to 64 bytes at
// least), and pixel 0 of every row sits kRowLead floats in, so whole-vector loads of a chunk never
// straddle two lines (a 64-byte load one float off a line boundary reads two).
using Floats = std::vector<float, LargeAllocator<float>>;
constexpr int kRowLead = 16;

// Row stride of every float row buffer (a multiple of a cache line): the replicated column each
// side (3x3 halo) at kRowLead - 1 and kRowLead + width, and kChunk floats of slack for
// whole-vector kernels. Pixel x of a row lives at row + kRowLead + x.
inline int row_stride(int width) { return (kRowLead + width + 1 + 15) / 16 * 16 + kChunk; }

inline void pad_row(float* row, int width) {
    row[kRowLead - 1] = row[kRowLead];
    row[kRowLead + width] = row[kRowLead + width - 1];
}

// Seconds each thread spent per stage, summed.
struct StageTimes {
    std::atomic<int64_t> upsampling{0}, modulation{0}, synthesis{0};  // nanoseconds
};

// Output row y (out_w values at out[0..]) of the 2x transposed conv of src (h x w). The source
// rows it reads are copied with T replicated columns each side, so every tap is a plain offset.
struct UpsampleScratch {
    std::vector<float> padded, phase;
};
void upsample_row(const float* src, int h, int w, const FloatModel& m, int y, int out_w, float* out,
                  UpsampleScratch& scratch, const Kernels& kernels);

// Stage "upsample", all but the last 2x step: every grid l >= 1 brought to half resolution
// (level1[l], shapes[1]), level by level from the coarsest.
void upsample_cascade(const FloatModel& m, const std::vector<std::vector<int8_t>>& latents,
                      const std::vector<std::pair<int, int>>& shapes, const Kernels& kernels, Level1& level1);

// Stages "upsample" (last 2x step), "modulate" and "synthesize" for image rows [y0, y1) into rgb
// (row y at rgb + y * rgb_stride), one row at a time (see lotc_synthesis.cpp).
class BandPipeline;
struct Bands {
    Bands(const FloatModel& m, const Level1& level1, const std::vector<std::pair<int, int>>& shapes,
          const std::vector<int8_t>& grid0, const Kernels& kernels, uint8_t* rgb, size_t rgb_stride);
    ~Bands();
    void run(int y0, int y1, StageTimes& times);
    std::unique_ptr<BandPipeline> pipeline;
};

}  // namespace lotc::detail
