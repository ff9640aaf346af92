// The float side's kernel-ready layers: the synthesis's live neurons and the modulation.
#include "lotc_model.h"

#include "lotc_philox.h"

#include <array>
#include <cmath>

namespace lotc::detail {

// The synthesis's kept weights as SparseLayers, dropping every hidden neuron that cannot change
// the output: one with no kept input from a live neuron or a modulation channel is GELU(0) = 0
// (the synthesis has no biases), one whose outputs no live neuron keeps is never read. Removing
// one can starve another, so the sweep repeats until nothing changes. Exact: a dropped term is
// w * 0, which changes no float sum.
void pack_synthesis(const std::vector<std::vector<uint8_t>>& masks, const std::vector<LayerShape>& shapes_io,
                    uint64_t seed, FloatModel& m) {
    const size_t layers = shapes_io.size();
    std::vector<std::vector<char>> live(layers);
    for (size_t l = 0; l < layers; ++l) live[l].assign(size_t(shapes_io[l].fan_out), 1);
    auto hidden_in = [&](size_t l) { return l == 0 ? 0 : shapes_io[l - 1].fan_out; };
    auto kept = [&](size_t l, int o, int i) { return masks[l][size_t(o) * shapes_io[l].fan_in + i] != 0; };
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t l = 0; l + 1 < layers; ++l) {
            const int fin = shapes_io[l].fan_in, fin_h = hidden_in(l);
            for (int o = 0; o < shapes_io[l].fan_out; ++o) {
                if (!live[l][o]) continue;
                bool fed = false, read = false;
                for (int i = 0; i < fin && !fed; ++i)
                    fed = kept(l, o, i) && (l == 0 || i >= fin_h || live[l - 1][size_t(i)]);
                for (int n = 0; n < shapes_io[l + 1].fan_out && !read; ++n) read = live[l + 1][n] && kept(l + 1, n, o);
                if (!fed || !read) live[l][o] = 0, changed = true;
            }
        }
    }
    // Appends neuron o of layer l with its kept weights; input_of maps an input to its index in
    // the packed layer (-1: dropped).
    auto append = [&](SparseLayer& layer, size_t l, int o, auto input_of) {
        const int fin = shapes_io[l].fan_in;
        const float scale = float(std::sqrt(6.0 / fin));
        for (int i = 0; i < fin; ++i) {
            const int input = kept(l, o, i) ? input_of(i) : -1;
            if (input < 0) continue;
            const size_t flat = size_t(o) * fin + i;
            const int32_t word = int32_t(philox_word0(seed, (uint64_t(l) << 32) | flat));
            layer.index.push_back(uint16_t(input));
            layer.value.push_back(float(word >> 8) * 1.1920928955078125e-07f * scale);
        }
        layer.start.push_back(uint32_t(layer.index.size()));
        ++layer.fan_out;
    };
    const std::array<SparseLayer*, 6> packed_layers = {&m.synth[0], &m.synth[1], &m.synth[2], &m.synth[3],
                                                        &m.synth0_x, &m.synth0_y};
    for (SparseLayer* layer : packed_layers) layer->start.assign(1, 0);
    // Layer 0 in three groups: both coordinates (inputs x, y), x alone (input x), y alone (input y).
    std::vector<int> position(size_t(shapes_io[0].fan_out), -1);  // previous layer's neuron -> input index
    auto group_of = [&](int o) { return kept(0, o, 0) && kept(0, o, 1) ? 0 : kept(0, o, 0) ? 1 : 2; };
    int packed = 0;
    for (int group = 0; group < 3; ++group)
        for (int o = 0; o < shapes_io[0].fan_out; ++o) {
            if (!live[0][o] || group_of(o) != group) continue;
            SparseLayer& layer = group == 0 ? m.synth[0] : group == 1 ? m.synth0_x : m.synth0_y;
            append(layer, 0, o, [&](int i) { return group == 2 ? 0 : i; });
            position[size_t(o)] = packed++;
        }
    for (size_t l = 1; l < layers; ++l) {
        const int fin_h = hidden_in(l), live_h = packed;
        std::vector<int> next_position(size_t(shapes_io[l].fan_out), -1);
        packed = 0;
        for (int o = 0; o < shapes_io[l].fan_out; ++o) {
            if (l + 1 < layers && !live[l][o]) continue;
            append(m.synth[l], l, o, [&](int i) { return i < fin_h ? position[size_t(i)] : i - fin_h + live_h; });
            next_position[size_t(o)] = packed++;
        }
        position = std::move(next_position);
    }
    for (SparseLayer* layer : packed_layers) layer->bias.assign(size_t(layer->fan_out), 0.0f);
}

SparseLayer dense_layer(int fan_out, int fan_in, const float* weight, const float* bias) {
    SparseLayer layer;
    layer.fan_out = fan_out;
    layer.start.push_back(0);
    for (int o = 0; o < fan_out; ++o) {
        for (int i = 0; i < fan_in; ++i) {
            layer.index.push_back(uint16_t(i));
            layer.value.push_back(weight[size_t(o) * fan_in + i]);
        }
        layer.start.push_back(uint32_t(layer.index.size()));
    }
    layer.bias = bias ? std::vector<float>(bias, bias + fan_out) : std::vector<float>(size_t(fan_out), 0.0f);
    return layer;
}

SparseLayer residual_layer(int mo, const std::vector<float>& weight, const std::vector<float>& bias) {
    SparseLayer layer;
    layer.fan_out = mo;
    layer.bias = bias;
    layer.start.push_back(0);
    for (int o = 0; o < mo; ++o) {
        for (int i = 0; i < 9 * mo; ++i) {
            layer.index.push_back(uint16_t(i));
            layer.value.push_back(weight[size_t(o) * 9 * mo + i]);
        }
        layer.index.push_back(uint16_t(9 * mo + o));
        layer.value.push_back(1.0f);
        layer.start.push_back(uint32_t(layer.index.size()));
    }
    return layer;
}

}  // namespace lotc::detail
