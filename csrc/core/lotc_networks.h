// Stage "read_networks": the networks section (docs/FORMAT.md 5).
#pragma once

#include "lotc_internal.h"
#include "lotc_kernels.h"

namespace lotc::detail {

struct Networks {
    std::vector<std::vector<int64_t>> arm_w, arm_b;  // per layer (out, in) and (out)
    std::vector<LayerShape> arm_shape;
    std::vector<float> ups;                           // (2, 2, T, T)
    std::vector<std::vector<float>> mod;              // w0 b0 w1 b1 w2 b2 w3 b3
    std::vector<ArmLayer> arm;                        // the ARM as the kernels run it
};

// The ARM, upsampling kernel and modulation from the section's bytes, with the ARM's int32 overflow
// bound checked.
Networks read_networks(const uint8_t* data, size_t size, const Config& c, const Tables& tables);

}  // namespace lotc::detail
