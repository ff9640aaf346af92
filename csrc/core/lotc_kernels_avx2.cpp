// AVX2+FMA kernel table. Built on every x86-64 compiler through function-level target
// attributes (no -mavx2 in the shared flag list), used only when the CPU reports AVX2 and FMA.
#include "lotc_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include <cstring>

#define LOTC_AVX2 __attribute__((target("avx2,fma")))

namespace lotc {
namespace {

// 2^t for t in [-125, 125] (the caller bounds it): t = n + f with n an integer and |f| <= 1/2,
// then 2^n times a fit of 2^f of the given degree (relative error 5.7e-6 for 4, 7.5e-5 for 3; both
// far below what an 8-bit output can see). Adding 1.5 * 2^23 rounds t to an integer in the low
// mantissa bits, which a shift moves straight into the exponent field: no round or convert
// instructions, which compete for the FMA ports.
template <int Degree>
LOTC_AVX2 inline __m256 exp2_fit_avx2(__m256 t) {
    static_assert(Degree == 3 || Degree == 4, "fits of degree 3 and 4 only");
    const __m256 shifted = _mm256_add_ps(t, _mm256_set1_ps(12582912.0f));
    const __m256 f = _mm256_sub_ps(t, _mm256_sub_ps(shifted, _mm256_set1_ps(12582912.0f)));
    __m256 p;
    if constexpr (Degree == 4) {
        p = _mm256_set1_ps(9.5902402e-3f);
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5870272e-2f));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4023677e-1f));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9312805e-1f));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    } else {
        p = _mm256_set1_ps(5.5171434e-2f);
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4261081e-1f));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9326097e-1f));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.9992812e-1f));
    }
    const __m256i scale = _mm256_slli_epi32(_mm256_castps_si256(shifted), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale));
}

// 2^t, t clamped to [-125, 125].
LOTC_AVX2 inline __m256 exp2_avx2(__m256 t) {
    return exp2_fit_avx2<4>(_mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-125.0f)), _mm256_set1_ps(125.0f)));
}

// 1 / d for d in [1, 2^126]: the 12-bit estimate and one Newton step (about 2^-23 relative),
// a third of a division's cost; the GELU and output transform only ever divide such values.
LOTC_AVX2 inline __m256 reciprocal_avx2(__m256 d) {
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

// GELU (tanh form) as x * sigmoid(2u) = x / (1 + 2^t), t = -2 u log2(e) = x (a + b x^2) with
// a = -2 sqrt(2/pi) log2(e), b = 0.044715 a: the same function as 0.5 x (1 + tanh u). Written as
// max(x, 0) - |x| q with q = 1 / (1 + 2^|t|) in (0, 1/2] (t is odd in x), so the reciprocal's
// error scales with |x| q <= 0.17 and vanishes for large |x| either way: the 12-bit estimate needs
// no Newton step, and 2^|t| needs only the upper clamp and a degree-3 fit (7.5e-5 relative on
// [-1/2, 1/2]): together at most 8e-5 absolute, far below an 8-bit level.
LOTC_AVX2 inline __m256 gelu_avx2(__m256 x) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = _mm256_mul_ps(a, _mm256_fmadd_ps(_mm256_set1_ps(0.10294324f), _mm256_mul_ps(x, x),
                                                      _mm256_set1_ps(2.3022082f)));
    const __m256 e = exp2_fit_avx2<3>(_mm256_min_ps(t, _mm256_set1_ps(125.0f)));  // t >= 0: no lower clamp
    const __m256 q = _mm256_rcp_ps(_mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_fnmadd_ps(a, q, _mm256_max_ps(x, _mm256_setzero_ps()));
}

LOTC_AVX2 inline void store_act(float* y, __m256 a, Activation act) {
    _mm256_storeu_ps(y, act == Activation::kGelu ? gelu_avx2(a) : a);
}

// Whole vectors only (lanes past n are the slack every buffer has): 64 pixels at a time, eight
// accumulators, one broadcast per kept weight.
LOTC_AVX2 void mac_avx2(const float* const* in, const SparseLayer& layer, float* const* out, int n,
                        Activation act) {
    for (int o = 0; o < layer.fan_out; ++o) {
        const uint32_t k0 = layer.start[o], k1 = layer.start[o + 1];
        const __m256 bias = _mm256_set1_ps(layer.bias[o]);
        for (int j = 0; j < n; j += 64) {
            __m256 a0 = bias, a1 = bias, a2 = bias, a3 = bias, a4 = bias, a5 = bias, a6 = bias, a7 = bias;
            for (uint32_t k = k0; k < k1; ++k) {
                const __m256 w = _mm256_set1_ps(layer.value[k]);
                const float* x = in[layer.index[k]] + j;
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 24), a3);
                a4 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 32), a4);
                a5 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 40), a5);
                a6 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 48), a6);
                a7 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 56), a7);
            }
            float* y = out[o] + j;
            store_act(y, a0, act), store_act(y + 8, a1, act), store_act(y + 16, a2, act);
            store_act(y + 24, a3, act), store_act(y + 32, a4, act), store_act(y + 40, a5, act);
            store_act(y + 48, a6, act), store_act(y + 56, a7, act);
        }
    }
}

LOTC_AVX2 void to_rgb8_avx2(const float* const* z, int n, uint8_t* rgb) {
    alignas(32) int32_t level[3][kChunk];
    const int vectors = (n + 7) / 8;
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < vectors; ++v) {
            // sigmoid(2z) = 1 / (1 + 2^(-2 z log2 e))
            const __m256 e = exp2_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.8853901f), _mm256_loadu_ps(z[c] + 8 * v)));
            __m256 s = reciprocal_avx2(_mm256_add_ps(_mm256_set1_ps(1.0f), e));
            s = _mm256_min_ps(_mm256_max_ps(s, _mm256_setzero_ps()), _mm256_set1_ps(1.0f));
            const __m256 scaled = _mm256_add_ps(_mm256_mul_ps(s, _mm256_set1_ps(255.0f)), _mm256_set1_ps(0.5f));
            _mm256_store_si256(reinterpret_cast<__m256i*>(level[c] + 8 * v), _mm256_cvttps_epi32(scaled));
        }
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < 3; ++c) rgb[3 * j + c] = uint8_t(level[c][j]);
}

// int16 copies of n values (n <= kArmMaxWidth, read in blocks of 16), for pairwise multiply-adds.
LOTC_AVX2 inline void narrow_to_int16(const __m256i* x, int n, int16_t* out) {
    for (int i = 0; i < n; i += 16) {
        const __m256i packed = _mm256_packs_epi32(_mm256_loadu_si256(x + i / 8), _mm256_loadu_si256(x + i / 8 + 1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permute4x64_epi64(packed, 0xD8));
    }
}

// sum_i w[i][o] x[i] for 8 outputs from int16 pairs: one vpmaddwd per two inputs (16 MACs).
LOTC_AVX2 inline __m256i dot_pairs(const int16_t* x16, const ArmLayer& layer, int ob) {
    __m256i acc = _mm256_setzero_si256();
    const int pairs = (layer.fan_in + 1) / 2;
    int32_t pair;
    for (int p = 0; p < pairs; ++p) {
        std::memcpy(&pair, x16 + 2 * p, sizeof pair);
        const __m256i w = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(layer.weight_pairs.data() + (size_t(p) * layer.padded_out + ob) * 2));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(w, _mm256_set1_epi32(pair)));
    }
    return acc;
}

LOTC_AVX2 inline void arm_layer_avx2(const int32_t* x, const ArmLayer& layer, int shift, bool relu, int32_t* y) {
    const __m128i count = _mm_cvtsi32_si128(shift);
    alignas(32) int16_t lo[kArmMaxWidth], hi[kArmMaxWidth];
    const __m256i* xv = reinterpret_cast<const __m256i*>(x);
    ArmLayer::Inputs inputs = layer.inputs;
    if (inputs != ArmLayer::Inputs::kInt16 && !layer.weight_pairs.empty()) {
        __m256i any = _mm256_setzero_si256();  // inputs are >= 0 here: all < 2^15 iff their OR is
        for (int i = 0; i < layer.fan_in; i += 8) any = _mm256_or_si256(any, _mm256_loadu_si256(xv + i / 8));
        if (_mm256_testz_si256(any, _mm256_set1_epi32(~0x7FFF))) inputs = ArmLayer::Inputs::kInt16;
    }
    if (inputs == ArmLayer::Inputs::kInt16) {
        narrow_to_int16(xv, layer.fan_in, lo);
    } else if (inputs == ArmLayer::Inputs::kSplit15) {  // x = hi * 2^15 + lo, both in [0, 2^15)
        alignas(32) int32_t parts[2][kArmMaxWidth];
        for (int i = 0; i < layer.fan_in; i += 8) {
            const __m256i v = _mm256_loadu_si256(xv + i / 8);
            _mm256_store_si256(reinterpret_cast<__m256i*>(parts[0] + i), _mm256_and_si256(v, _mm256_set1_epi32(0x7FFF)));
            _mm256_store_si256(reinterpret_cast<__m256i*>(parts[1] + i), _mm256_srli_epi32(v, 15));
        }
        narrow_to_int16(reinterpret_cast<const __m256i*>(parts[0]), layer.fan_in, lo);
        narrow_to_int16(reinterpret_cast<const __m256i*>(parts[1]), layer.fan_in, hi);
    }
    for (int ob = 0; ob < layer.padded_out; ob += 8) {
        __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(layer.bias.data() + ob));
        if (inputs == ArmLayer::Inputs::kInt32) {
            const int32_t* w = layer.weight_t.data() + ob;
            for (int i = 0; i < layer.fan_in; ++i)
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + size_t(i) * layer.padded_out)),
                    _mm256_set1_epi32(x[i])));
        } else {
            acc = _mm256_add_epi32(acc, dot_pairs(lo, layer, ob));
            // The split's two sums wrap in int32 lanes; their total is the true value, which the
            // parse-time bound keeps inside int32, so the wrapped total is exact.
            if (inputs == ArmLayer::Inputs::kSplit15)
                acc = _mm256_add_epi32(acc, _mm256_slli_epi32(dot_pairs(hi, layer, ob), 15));
        }
        acc = _mm256_sra_epi32(acc, count);
        if (relu) acc = _mm256_max_epi32(acc, _mm256_setzero_si256());
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + ob), acc);
    }
}

LOTC_AVX2 void arm_avx2(const int32_t* context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls) {
    alignas(32) int32_t ping[kArmMaxWidth], pong[kArmMaxWidth];
    const int32_t* x = context;
    for (int l = 0; l < n_layers; ++l) {
        int32_t* y = (l & 1) ? pong : ping;
        arm_layer_avx2(x, layers[l], shift, l + 1 < n_layers, y);
        x = y;
    }
    mu_ls[0] = x[0];
    mu_ls[1] = x[1];
}

// arm_avx2 with every activation in one register: no stores, no reloads, on the serial path of a
// memo miss. Inputs below 2^15 (layer 0's, proven; a hidden layer's, checked) go through int16
// pairs, others through 32-bit products (exact: the parse-time bound keeps every sum in int32).
LOTC_AVX2 void arm_small_avx2(uint64_t context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls) {
    const __m128i count = _mm_cvtsi32_si128(shift);
    __m256i x = _mm256_slli_epi32(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(int64_t(context))), kActFrac);
    for (int l = 0; l < n_layers; ++l) {
        const ArmLayer& layer = layers[l];
        __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(layer.bias.data()));
        const bool int16 = !layer.weight_pairs.empty() &&
                           (layer.inputs == ArmLayer::Inputs::kInt16 || _mm256_testz_si256(x, _mm256_set1_epi32(~0x7FFF)));
        if (int16) {
            // 32-bit element 0, 1, 4, 5 of the packed register: input pairs (0, 1), (2, 3), (4, 5), (6, 7).
            const __m256i packed = _mm256_packs_epi32(x, x);
            const __m256i* w = reinterpret_cast<const __m256i*>(layer.weight_pairs.data());
            for (int p = 0; p < (layer.fan_in + 1) / 2; ++p) {
                const __m256i pair = _mm256_permutevar8x32_epi32(packed, _mm256_set1_epi32((p & 1) | (p & 2) << 1));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256(w + p), pair));
            }
        } else {
            for (int i = 0; i < layer.fan_in; ++i) {
                const __m256i xi = _mm256_permutevar8x32_epi32(x, _mm256_set1_epi32(i));
                const __m256i wi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(layer.weight_t.data()) + i);
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(wi, xi));
            }
        }
        x = _mm256_sra_epi32(acc, count);
        if (l + 1 < n_layers) x = _mm256_max_epi32(x, _mm256_setzero_si256());
    }
    const __m128i low = _mm256_castsi256_si128(x);
    mu_ls[0] = _mm_cvtsi128_si32(low);
    mu_ls[1] = _mm_extract_epi32(low, 1);
}

}  // namespace

const Kernels* avx2_kernels() {
    static const Kernels table{"avx2", mac_avx2, to_rgb8_avx2, arm_avx2, arm_small_avx2};
    static const bool usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return usable ? &table : nullptr;
}

}  // namespace lotc

#else

namespace lotc {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace lotc

#endif
