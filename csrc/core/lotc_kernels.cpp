// The scalar kernel table (always built, the one `--scalar` forces) and the run-time choice.
// Plain loops in the reference decoder's formulas: tanh written through exp, no fused
// multiply-adds (-ffp-contract=off).
#include "lotc_kernels.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace lotc {
namespace {

float gelu_scalar(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    float tanh_u = 1.0f - 2.0f / (std::exp(2.0f * u) + 1.0f);
    return 0.5f * x * (1.0f + tanh_u);
}

void mac_scalar(const float* const* in, const SparseLayer& layer, float* const* out, int n, Activation act) {
    float acc[kChunk];
    for (int o = 0; o < layer.fan_out; ++o) {
        std::fill(acc, acc + n, layer.bias[o]);
        for (uint32_t k = layer.start[o]; k < layer.start[o + 1]; ++k) {
            const float w = layer.value[k];
            const float* x = in[layer.index[k]];
            for (int j = 0; j < n; ++j) acc[j] += w * x[j];
        }
        float* y = out[o];
        if (act == Activation::kGelu)
            for (int j = 0; j < n; ++j) y[j] = gelu_scalar(acc[j]);
        else
            std::copy(acc, acc + n, y);
    }
}

void to_rgb8_scalar(const float* const* z, int n, uint8_t* rgb) {
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < 3; ++c) {
            float v = 1.0f / (1.0f + std::exp(-2.0f * z[c][j]));
            v = std::min(std::max(v, 0.0f), 1.0f);
            rgb[3 * j + c] = uint8_t(std::floor(v * 255.0f + 0.5f));
        }
}

void arm_layer_scalar(const int32_t* x, const ArmLayer& layer, int shift, bool relu, int32_t* y) {
    for (int o = 0; o < layer.fan_out; ++o) {
        int32_t acc = layer.bias[o];
        // Indexed, not a pointer formed up front: with no inputs (arm_context = 0) weight_t is
        // empty and data() + o would be arithmetic on a null pointer (UBSan, clang).
        for (int i = 0; i < layer.fan_in; ++i) acc += layer.weight_t[size_t(i) * layer.padded_out + o] * x[i];
        int32_t v = acc >> shift;  // arithmetic shift: the spec's floor rounding
        y[o] = (relu && v < 0) ? 0 : v;
    }
}

void arm_scalar(const int32_t* context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls) {
    alignas(32) int32_t ping[kArmMaxWidth], pong[kArmMaxWidth];
    const int32_t* x = context;
    for (int l = 0; l < n_layers; ++l) {
        int32_t* y = (l & 1) ? pong : ping;
        arm_layer_scalar(x, layers[l], shift, l + 1 < n_layers, y);
        x = y;
    }
    mu_ls[0] = x[0];
    mu_ls[1] = x[1];
}

}  // namespace

const Kernels& scalar_kernels() {
    static const Kernels table{"scalar", mac_scalar, to_rgb8_scalar, arm_scalar, nullptr};
    return table;
}

const Kernels& select_kernels(const std::string& name) {
    if (name == "auto") {
        for (const Kernels* k : {avx512_kernels(), avx2_kernels(), neon_kernels()})
            if (k) return *k;
        return scalar_kernels();
    }
    if (name == "scalar") return scalar_kernels();
    const Kernels* k = name == "avx2" ? avx2_kernels() : name == "avx512" ? avx512_kernels()
                     : name == "neon" ? neon_kernels() : nullptr;
    if (!k) throw std::invalid_argument("kernels '" + name + "' not available on this CPU or build "
                                        "(auto, scalar, avx2, avx512, neon)");
    return *k;
}

}  // namespace lotc
