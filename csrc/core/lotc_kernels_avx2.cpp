// AVX2+FMA kernel table. Built on every x86-64 compiler through function-level target
// attributes (no -mavx2 in the shared flag list), used only when the CPU reports AVX2 and FMA.
#include "lotc_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define LOTC_AVX2 __attribute__((target("avx2,fma")))

namespace lotc {
namespace {

// exp on [-87, 88] (inputs clamped): 2^n * p(r), r = x - n ln2 in two parts, Cephes' degree-5
// polynomial; about 2 ulp, far below what an 8-bit output can see.
LOTC_AVX2 inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// GELU (tanh form) as x * sigmoid(2u), the same function as 0.5 x (1 + tanh u) with one exp.
LOTC_AVX2 inline __m256 gelu_avx2(__m256 x) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                   _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

LOTC_AVX2 inline void store_act(float* y, __m256 a, Activation act) {
    _mm256_storeu_ps(y, act == Activation::kGelu ? gelu_avx2(a) : a);
}

LOTC_AVX2 void mac_avx2(const float* const* in, const SparseLayer& layer, float* const* out, int n,
                        Activation act) {
    const int vectors = (n + 7) / 8;
    for (int o = 0; o < layer.fan_out; ++o) {
        const uint32_t k0 = layer.start[o], k1 = layer.start[o + 1];
        const __m256 bias = _mm256_set1_ps(layer.bias[o]);
        float* y = out[o];
        if (vectors == 8) {  // a whole chunk: eight accumulators, one broadcast per kept weight
            __m256 a0 = bias, a1 = bias, a2 = bias, a3 = bias, a4 = bias, a5 = bias, a6 = bias, a7 = bias;
            for (uint32_t k = k0; k < k1; ++k) {
                const __m256 w = _mm256_set1_ps(layer.value[k]);
                const float* x = in[layer.index[k]];
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 24), a3);
                a4 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 32), a4);
                a5 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 40), a5);
                a6 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 48), a6);
                a7 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 56), a7);
            }
            store_act(y, a0, act), store_act(y + 8, a1, act), store_act(y + 16, a2, act);
            store_act(y + 24, a3, act), store_act(y + 32, a4, act), store_act(y + 40, a5, act);
            store_act(y + 48, a6, act), store_act(y + 56, a7, act);
            continue;
        }
        for (int v = 0; v < vectors; ++v) {
            __m256 a = bias;
            for (uint32_t k = k0; k < k1; ++k)
                a = _mm256_fmadd_ps(_mm256_set1_ps(layer.value[k]), _mm256_loadu_ps(in[layer.index[k]] + 8 * v), a);
            store_act(y + 8 * v, a, act);
        }
    }
}

LOTC_AVX2 void to_rgb8_avx2(const float* const* z, int n, uint8_t* rgb) {
    alignas(32) int32_t level[3][kChunk];
    const int vectors = (n + 7) / 8;
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < vectors; ++v) {
            const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_loadu_ps(z[c] + 8 * v)));
            __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
            s = _mm256_min_ps(_mm256_max_ps(s, _mm256_setzero_ps()), _mm256_set1_ps(1.0f));
            const __m256 scaled = _mm256_add_ps(_mm256_mul_ps(s, _mm256_set1_ps(255.0f)), _mm256_set1_ps(0.5f));
            _mm256_store_si256(reinterpret_cast<__m256i*>(level[c] + 8 * v), _mm256_cvttps_epi32(scaled));
        }
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < 3; ++c) rgb[3 * j + c] = uint8_t(level[c][j]);
}

LOTC_AVX2 void arm_layer_avx2(const int32_t* x, const ArmLayer& layer, int shift, bool relu, int32_t* y) {
    const __m128i count = _mm_cvtsi32_si128(shift);
    for (int ob = 0; ob < layer.padded_out; ob += 8) {
        __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(layer.bias.data() + ob));
        const int32_t* w = layer.weight_t.data() + ob;
        for (int i = 0; i < layer.fan_in; ++i)
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + size_t(i) * layer.padded_out)),
                _mm256_set1_epi32(x[i])));
        acc = _mm256_sra_epi32(acc, count);
        if (relu) acc = _mm256_max_epi32(acc, _mm256_setzero_si256());
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + ob), acc);
    }
}

}  // namespace

const Kernels* avx2_kernels() {
    static const Kernels table{"avx2", mac_avx2, to_rgb8_avx2, arm_layer_avx2};
    static const bool usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return usable ? &table : nullptr;
}

}  // namespace lotc

#else

namespace lotc {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace lotc

#endif
