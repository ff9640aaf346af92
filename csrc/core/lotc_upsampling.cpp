// Stage "upsample" (docs/FORMAT.md 8): 2x steps with edge replication, row by row.
#include "lotc_model.h"

#include <algorithm>
#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace lotc::detail {
namespace {

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

}  // namespace

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

void upsample_cascade(const FloatModel& m, const std::vector<std::vector<int8_t>>& latents,
                      const std::vector<std::pair<int, int>>& shapes, const Kernels& kernels, Level1& level1) {
    const size_t plane = size_t(shapes[1].first) * shapes[1].second;
    level1.arena.resize(plane * size_t(m.grids - 1));
    level1.planes.assign(size_t(m.grids), nullptr);
    // Grid l at its own level (current[l]): the latents, then each 2x step's output, the last one
    // (level 1) written straight into the arena.
    std::vector<Plane> current(size_t(m.grids));
    for (int l = 1; l < m.grids; ++l) {
        float* dst = level1.arena.data() + plane * size_t(l - 1);
        level1.planes[size_t(l)] = dst;
        if (l == 1) {
            std::copy(latents[1].begin(), latents[1].end(), dst);
        } else {
            current[size_t(l)].reset(new float[latents[size_t(l)].size()]);
            std::copy(latents[size_t(l)].begin(), latents[size_t(l)].end(), current[size_t(l)].get());
        }
    }
    UpsampleScratch scratch;
    for (int level = m.grids - 2; level >= 1; --level) {
        const auto [h, w] = shapes[level + 1];
        const auto [out_h, out_w] = shapes[level];
        for (int l = level + 1; l < m.grids; ++l) {  // grids level + 1.. are at level + 1
            Plane next(level > 1 ? new float[size_t(out_h) * out_w] : nullptr);
            float* dst = level > 1 ? next.get() : level1.arena.data() + plane * size_t(l - 1);
            for (int r = 0; r < out_h; ++r)
                upsample_row(current[size_t(l)].get(), h, w, m, r, out_w, dst + size_t(r) * out_w, scratch, kernels);
            current[size_t(l)] = std::move(next);
        }
    }
}

}  // namespace lotc::detail
