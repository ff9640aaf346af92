// Stage "read_networks": the networks section (docs/FORMAT.md 5).
#pragma once

#include "lotc_internal.h"
#include "lotc_kernels.h"

namespace lotc::detail {

struct Networks {
    std::vector<std::vector<int64_t>> arm_w, arm_b;  // per tensor pair (out, in) and (out), residual folded in
    std::vector<LayerShape> arm_shape;
    std::vector<float> ups;                           // (2, 2, T, T)
    std::vector<std::vector<float>> mod;              // w0 b0 w1 b1 w2 b2 w3 b3
    std::vector<ArmLayer> arm;                        // the ARM as the kernels run it (residual folded in)
    ArmLayer arm_stabiliser;                          // fan_in 0 when the config has none
};

// Adds the stabiliser's output on the ARM inputs x to the chain's (mu, log2 scale): its own
// accumulator and rounding, as decoder/entropy.py IntArm.forward (bounds proven at parse time).
inline void add_arm_stabiliser(const ArmLayer& s, const int32_t* x, int shift, int32_t mu_ls[2]) {
    for (int o = 0; o < 2; ++o) {
        int32_t acc = s.bias[size_t(o)];
        for (int i = 0; i < s.fan_in; ++i) acc += s.weight_t[size_t(i) * s.padded_out + o] * x[i];
        mu_ls[o] += acc >> shift;
    }
}

// The ARM, upsampling kernel and modulation from the section's bytes, with the ARM's int32 overflow
// bound checked.
Networks read_networks(const uint8_t* data, size_t size, const Config& c, const Tables& tables);

}  // namespace lotc::detail
