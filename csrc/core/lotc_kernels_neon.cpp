// NEON kernel table for AArch64 (NEON is part of the base ISA there, so no run-time check).
#include "lotc_kernels.h"

#if defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>

namespace lotc {
namespace {

// Same exp as the AVX2 table: clamp, 2^n * Cephes' degree-5 polynomial of r = x - n ln2.
inline float32x4_t exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    const float32x4_t y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

inline float32x4_t gelu_neon(float32x4_t x) {
    const float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    const float32x4_t u = vmulq_f32(vdupq_n_f32(0.7978845608028654f), vfmaq_f32(x, vdupq_n_f32(0.044715f), x3));
    const float32x4_t e = exp_neon(vmulq_f32(vdupq_n_f32(-2.0f), u));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

inline void store_act(float* y, float32x4_t a, Activation act) {
    vst1q_f32(y, act == Activation::kGelu ? gelu_neon(a) : a);
}

void mac_neon(const float* const* in, const SparseLayer& layer, float* const* out, int n, Activation act) {
    const int vectors = (n + 3) / 4;
    for (int o = 0; o < layer.fan_out; ++o) {
        const uint32_t k0 = layer.start[o], k1 = layer.start[o + 1];
        float* y = out[o];
        for (int v = 0; v < vectors; v += 4) {  // four accumulators (16 pixels) per pass
            float32x4_t a0 = vdupq_n_f32(layer.bias[o]), a1 = a0, a2 = a0, a3 = a0;
            for (uint32_t k = k0; k < k1; ++k) {
                const float w = layer.value[k];
                const float* x = in[layer.index[k]] + 4 * v;
                a0 = vfmaq_n_f32(a0, vld1q_f32(x), w);
                a1 = vfmaq_n_f32(a1, vld1q_f32(x + 4), w);
                a2 = vfmaq_n_f32(a2, vld1q_f32(x + 8), w);
                a3 = vfmaq_n_f32(a3, vld1q_f32(x + 12), w);
            }
            float* yv = y + 4 * v;
            store_act(yv, a0, act), store_act(yv + 4, a1, act), store_act(yv + 8, a2, act), store_act(yv + 12, a3, act);
        }
    }
}

void to_rgb8_neon(const float* const* z, int n, uint8_t* rgb) {
    int32_t level[3][kChunk];
    const int vectors = (n + 3) / 4;
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < vectors; ++v) {
            const float32x4_t e = exp_neon(vmulq_f32(vdupq_n_f32(-2.0f), vld1q_f32(z[c] + 4 * v)));
            float32x4_t s = vdivq_f32(vdupq_n_f32(1.0f), vaddq_f32(vdupq_n_f32(1.0f), e));
            s = vminq_f32(vmaxq_f32(s, vdupq_n_f32(0.0f)), vdupq_n_f32(1.0f));
            const float32x4_t scaled = vaddq_f32(vmulq_f32(s, vdupq_n_f32(255.0f)), vdupq_n_f32(0.5f));
            vst1q_s32(level[c] + 4 * v, vcvtq_s32_f32(scaled));
        }
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < 3; ++c) rgb[3 * j + c] = uint8_t(level[c][j]);
}

void arm_layer_neon(const int32_t* x, const ArmLayer& layer, int shift, bool relu, int32_t* y) {
    const int32x4_t right = vdupq_n_s32(-shift);  // vshlq by a negative count: arithmetic right shift
    for (int ob = 0; ob < layer.padded_out; ob += 4) {
        int32x4_t acc = vld1q_s32(layer.bias.data() + ob);
        const int32_t* w = layer.weight_t.data() + ob;
        for (int i = 0; i < layer.fan_in; ++i) acc = vmlaq_n_s32(acc, vld1q_s32(w + size_t(i) * layer.padded_out), x[i]);
        acc = vshlq_s32(acc, right);
        if (relu) acc = vmaxq_s32(acc, vdupq_n_s32(0));
        vst1q_s32(y + ob, acc);
    }
}

}  // namespace

const Kernels* neon_kernels() {
    static const Kernels table{"neon", mac_neon, to_rgb8_neon, arm_layer_neon};
    return &table;
}

}  // namespace lotc

#else

namespace lotc {
const Kernels* neon_kernels() { return nullptr; }
}  // namespace lotc

#endif
