// NEON kernel table for AArch64 (NEON is part of the base ISA there, so no run-time check) and
// for 32-bit ARMv7-A built with NEON and VFPv4 (-mfpu=neon-vfpv4: the fused multiply-add), where a
// build for NEON is a build for CPUs that have it.
#include "lotc_kernels.h"

#if defined(__ARM_NEON) && (defined(__aarch64__) || defined(__ARM_FEATURE_FMA))
#include <arm_neon.h>

namespace lotc {
namespace {

// Round to an integer-valued float: ARMv8's vrndn; ARMv7 has none, so add ±0.5 and truncate
// (ties away from zero instead of to even: exp2_neon only needs |t - n| <= 0.5).
inline float32x4_t round_neon(float32x4_t t) {
#if defined(__aarch64__) || defined(__ARM_FEATURE_DIRECTED_ROUNDING)
    return vrndnq_f32(t);
#else
    const float32x4_t half = vbslq_f32(vdupq_n_u32(0x80000000u), t, vdupq_n_f32(0.5f));  // copysign(0.5, t)
    return vcvtq_f32_s32(vcvtq_s32_f32(vaddq_f32(t, half)));
#endif
}

// The AVX2 table's formulas (see there): 2^t by a degree-5 fit, reciprocal by estimate + Newton step.
inline float32x4_t exp2_neon(float32x4_t t) {
    t = vminq_f32(vmaxq_f32(t, vdupq_n_f32(-125.0f)), vdupq_n_f32(125.0f));
    const float32x4_t n = round_neon(t);
    const float32x4_t f = vsubq_f32(t, n);
    float32x4_t p = vdupq_n_f32(1.3216948e-3f);
    p = vfmaq_f32(vdupq_n_f32(9.6667539e-3f), p, f);
    p = vfmaq_f32(vdupq_n_f32(5.5508338e-2f), p, f);
    p = vfmaq_f32(vdupq_n_f32(2.4022318e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(6.9314694e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    const int32x4_t scale = vshlq_n_s32(vcvtq_s32_f32(n), 23);
    return vreinterpretq_f32_s32(vaddq_s32(vreinterpretq_s32_f32(p), scale));
}

inline float32x4_t reciprocal_neon(float32x4_t d) {
    float32x4_t r = vrecpeq_f32(d);   // about 8 bits
    r = vmulq_f32(r, vrecpsq_f32(d, r));  // Newton steps: 16, then 23 bits
    return vmulq_f32(r, vrecpsq_f32(d, r));
}

inline float32x4_t gelu_neon(float32x4_t x) {
    const float32x4_t t = vmulq_f32(x, vfmaq_f32(vdupq_n_f32(-2.3022082f), vdupq_n_f32(-0.10294324f), vmulq_f32(x, x)));
    return vmulq_f32(x, reciprocal_neon(vaddq_f32(vdupq_n_f32(1.0f), exp2_neon(t))));
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
                const float32x4_t w = vdupq_n_f32(layer.value[k]);  // vfmaq_n_f32 is AArch64 only
                const float* x = in[layer.index[k]] + 4 * v;
                a0 = vfmaq_f32(a0, vld1q_f32(x), w);
                a1 = vfmaq_f32(a1, vld1q_f32(x + 4), w);
                a2 = vfmaq_f32(a2, vld1q_f32(x + 8), w);
                a3 = vfmaq_f32(a3, vld1q_f32(x + 12), w);
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
            const float32x4_t e = exp2_neon(vmulq_f32(vdupq_n_f32(-2.8853901f), vld1q_f32(z[c] + 4 * v)));
            float32x4_t s = reciprocal_neon(vaddq_f32(vdupq_n_f32(1.0f), e));
            s = vminq_f32(vmaxq_f32(s, vdupq_n_f32(0.0f)), vdupq_n_f32(1.0f));
            const float32x4_t scaled = vaddq_f32(vmulq_f32(s, vdupq_n_f32(255.0f)), vdupq_n_f32(0.5f));
            vst1q_s32(level[c] + 4 * v, vcvtq_s32_f32(scaled));
        }
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < 3; ++c) rgb[3 * j + c] = uint8_t(level[c][j]);
}

inline void arm_layer_neon(const int32_t* x, const ArmLayer& layer, int shift, bool relu, int32_t* y) {
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

void arm_neon(const int32_t* context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls) {
    alignas(32) int32_t ping[kArmMaxWidth], pong[kArmMaxWidth];
    const int32_t* x = context;
    for (int l = 0; l < n_layers; ++l) {
        int32_t* y = (l & 1) ? pong : ping;
        arm_layer_neon(x, layers[l], shift, l + 1 < n_layers, y);
        x = y;
    }
    mu_ls[0] = x[0];
    mu_ls[1] = x[1];
}

}  // namespace

const Kernels* neon_kernels() {
    static const Kernels table{"neon", mac_neon, to_rgb8_neon, arm_neon, nullptr};
    return &table;
}

}  // namespace lotc

#else

namespace lotc {
const Kernels* neon_kernels() { return nullptr; }
}  // namespace lotc

#endif
