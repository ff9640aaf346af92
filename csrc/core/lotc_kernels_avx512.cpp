// AVX-512 kernel table for the float stages (16 lanes: the masked synthesis, modulation and GELU
// cost half as many instructions as with AVX2); the integer ARM is the AVX2 table's. Function-level
// target attributes as for AVX2; used only when the CPU reports AVX-512F and DQ (and AVX2+FMA).
#include "lotc_kernels.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define LOTC_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))

namespace lotc {
namespace {

// 2^t = p(f) * 2^floor(t) with f = t - floor(t) in [0, 1): vreduceps gives f in one instruction,
// vscalefps multiplies by 2^floor(t) itself (it floors its second operand) and saturates to 0 and
// +inf (no clamping). p: a fit of 2^f on [0, 1) of the given degree, 2.7e-6 relative at most for
// 4, 7.5e-5 for 3.
template <int Degree>
LOTC_AVX512 inline __m512 exp2_fit_avx512(__m512 t) {
    static_assert(Degree == 3 || Degree == 4, "fits of degree 3 and 4 only");
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p;
    if constexpr (Degree == 4) {
        p = _mm512_set1_ps(1.3534166e-2f);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.2011468e-2f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4144275e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9300383e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000026f));
    } else {
        p = _mm512_set1_ps(7.8024030e-2f);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.2606707e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9583398e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9992514e-1f));
    }
    return _mm512_scalef_ps(p, t);
}

// Clamped as in the AVX2 table: 2^t stays finite, so 1 + 2^t is a normal number whose
// reciprocal a Newton step can refine (1 / inf would turn it into NaN).
LOTC_AVX512 inline __m512 exp2_avx512(__m512 t) {
    return exp2_fit_avx512<4>(_mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-125.0f)), _mm512_set1_ps(125.0f)));
}

// 1 / d for d in [1, 2^126]: the 14-bit estimate and one Newton step (about 2^-23 relative). The
// estimate alone (6e-5 relative) is invisible in trained files but not in every valid one: with
// large activations (e.g. mod_weight_step_exp = 0) the error grows through the layers, and one
// such file decoded 7 levels from the reference (FORMAT §8 promises one).
LOTC_AVX512 inline __m512 reciprocal_avx512(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

// GELU(x) = x / (1 + 2^t(x)) with t odd in x, written as max(x, 0) - |x| q, q = 1 / (1 + 2^|t|) in
// (0, 1/2]: the reciprocal's error then scales with |x| q (at most 0.17), not with x, and vanishes
// for large |x| in both directions, so the 14-bit estimate needs no Newton step (the same estimate
// in x / (1 + 2^t) drifted 7 levels on large activations). 2^|t| >= 1 needs no clamp: where it
// overflows to +inf, rcp14 gives q = 0 and GELU(x) = max(x, 0) exactly.
LOTC_AVX512 inline __m512 gelu_avx512(__m512 x) {
    const __m512 a = _mm512_abs_ps(x);
    const __m512 t = _mm512_mul_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(0.10294324f), _mm512_mul_ps(x, x),
                                                      _mm512_set1_ps(2.3022082f)));
    const __m512 q = _mm512_rcp14_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), exp2_fit_avx512<3>(t)));
    return _mm512_fnmadd_ps(a, q, _mm512_max_ps(x, _mm512_setzero_ps()));
}

LOTC_AVX512 inline void store_act(float* y, __m512 a, Activation act) {
    _mm512_storeu_ps(y, act == Activation::kGelu ? gelu_avx512(a) : a);
}

// acc[v] += w * x[16 v .. 16 v + V * 16) for V vectors.
template <int V>
LOTC_AVX512 inline void fma_vectors(float w, const float* x, __m512* acc) {
    const __m512 wv = _mm512_set1_ps(w);
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + 16 * v), acc[v]);
}

// Whole vectors only (lanes past n are the slack every buffer has). Eight FMA chains in flight per
// output, or the FMA ports wait on the FMA latency: over more than 64 pixels, one accumulator per
// vector (eight); over at most 64, the kept weights alternate between two sets of four.
LOTC_AVX512 void mac_avx512(const float* const* in, const SparseLayer& layer, float* const* out, int n,
                            Activation act) {
    for (int o = 0; o < layer.fan_out; ++o) {
        const uint32_t k0 = layer.start[o], k1 = layer.start[o + 1];
        const __m512 bias = _mm512_set1_ps(layer.bias[o]);
        float* y = out[o];
        if (n > 64) {
            __m512 a[8];
#pragma GCC unroll 8
            for (int v = 0; v < 8; ++v) a[v] = bias;
            for (uint32_t k = k0; k < k1; ++k) fma_vectors<8>(layer.value[k], in[layer.index[k]], a);
#pragma GCC unroll 8
            for (int v = 0; v < 8; ++v) store_act(y + 16 * v, a[v], act);
        } else {
            __m512 a[4] = {bias, bias, bias, bias};
            __m512 b[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            uint32_t k = k0;
            for (; k + 1 < k1; k += 2) {
                fma_vectors<4>(layer.value[k], in[layer.index[k]], a);
                fma_vectors<4>(layer.value[k + 1], in[layer.index[k + 1]], b);
            }
            if (k < k1) fma_vectors<4>(layer.value[k], in[layer.index[k]], a);
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) store_act(y + 16 * v, _mm512_add_ps(a[v], b[v]), act);
        }
    }
}

// pshufb masks: [i][c] moves channel c's 16 bytes to their places in bytes 16 i .. 16 i + 15 of
// the pixels' RGBRGB... layout (-128: a zero byte, filled by another channel).
struct RgbMasks {
    alignas(16) int8_t m[3][3][16];
};
const RgbMasks kRgbMasks = [] {
    RgbMasks masks{};
    for (int i = 0; i < 3; ++i)
        for (int c = 0; c < 3; ++c)
            for (int t = 0; t < 16; ++t) masks.m[i][c][t] = int8_t((16 * i + t) % 3 == c ? (16 * i + t) / 3 : -128);
    return masks;
}();

LOTC_AVX512 void to_rgb8_avx512(const float* const* z, int n, uint8_t* rgb) {
    for (int j = 0; j < n; j += 16) {
        __m128i level[3];  // 16 pixels' 8-bit levels per channel
        for (int c = 0; c < 3; ++c) {
            const __m512 e = exp2_avx512(_mm512_mul_ps(_mm512_set1_ps(-2.8853901f), _mm512_loadu_ps(z[c] + j)));
            __m512 s = reciprocal_avx512(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
            s = _mm512_min_ps(_mm512_max_ps(s, _mm512_setzero_ps()), _mm512_set1_ps(1.0f));
            const __m512 scaled = _mm512_add_ps(_mm512_mul_ps(s, _mm512_set1_ps(255.0f)), _mm512_set1_ps(0.5f));
            level[c] = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(scaled));
        }
        alignas(16) uint8_t bytes[48];
        for (int i = 0; i < 3; ++i) {
            const __m128i* mask = reinterpret_cast<const __m128i*>(kRgbMasks.m[i]);
            const __m128i part = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(level[0], _mm_load_si128(mask)),
                                                           _mm_shuffle_epi8(level[1], _mm_load_si128(mask + 1))),
                                              _mm_shuffle_epi8(level[2], _mm_load_si128(mask + 2)));
            _mm_store_si128(reinterpret_cast<__m128i*>(bytes + 16 * i), part);
        }
        std::memcpy(rgb + 3 * j, bytes, size_t(3) * std::min(16, n - j));
    }
}

}  // namespace

const Kernels* avx512_kernels() {
    const Kernels* avx2 = avx2_kernels();
    static const bool usable = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (!usable) return nullptr;
    static const Kernels table{"avx512", mac_avx512, to_rgb8_avx512, avx2->arm, avx2->arm_small};
    return &table;
}

}  // namespace lotc

#else

namespace lotc {
const Kernels* avx512_kernels() { return nullptr; }
}  // namespace lotc

#endif
