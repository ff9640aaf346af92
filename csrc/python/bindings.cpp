// The only pybind11 file: lotterycodec.decoder._lotc_cpu. Decoding releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "../core/lotc_decoder.h"

namespace py = pybind11;

PYBIND11_MODULE(_lotc_cpu, m) {
    m.doc() = "LotteryCodec C++ decoder core (SIMD kernels chosen at run time, threads over substreams and row bands)";
    py::register_exception<lotc::DecodeError>(m, "DecodeError", PyExc_ValueError);
    py::class_<lotc::Tables>(m, "Tables");
    m.def("make_tables", [](py::array_t<uint32_t, py::array::c_style | py::array::forcecast> weights) {
        return lotc::Tables::from_weights(weights.data(), size_t(weights.size()));
    });
    m.def("config_fields", [] {
        py::list out;
        for (const auto& f : lotc::config_fields()) out.append(py::make_tuple(f.name, f.lo, f.hi, f.def));
        return out;
    });
    py::register_exception<std::invalid_argument>(m, "KernelsError", PyExc_ValueError);
    m.def("kernels", [](const std::string& name) { return std::string(lotc::kernels_name(name)); },
          py::arg("name") = "auto");
    m.def("available_kernels", &lotc::available_kernels);
    m.def("decode", [](py::bytes data, const lotc::Tables& tables, int threads, bool latents_only,
                       const std::string& kernels) {
        // The caller's bytes object stays alive (it is an argument) and immutable, so the decoder reads
        // it in place without the GIL; the image is handed to NumPy without a copy (the capsule owns it).
        char* ptr = nullptr;
        Py_ssize_t size = 0;
        if (PyBytes_AsStringAndSize(data.ptr(), &ptr, &size) != 0) throw py::error_already_set();
        lotc::Decoded d;
        {
            py::gil_scoped_release release;
            d = lotc::decode(reinterpret_cast<const uint8_t*>(ptr), size_t(size), tables, threads, latents_only,
                            kernels);
        }
        using Rgb = decltype(d.rgb);
        auto* rgb = new Rgb(std::move(d.rgb));
        py::capsule owner(rgb, [](void* p) { delete static_cast<Rgb*>(p); });
        py::array_t<uint8_t> image(std::vector<py::ssize_t>{latents_only ? 0 : d.height, d.width, 3}, rgb->data(),
                                   owner);
        py::list latents;
        for (size_t g = 0; g < d.latents.size(); ++g) {
            py::array_t<int32_t> a({d.grid_shapes[g].first, d.grid_shapes[g].second});
            std::copy(d.latents[g].begin(), d.latents[g].end(), a.mutable_data());
            latents.append(a);
        }
        py::dict times;
        times["parse"] = d.t_parse;
        times["entropy"] = d.t_entropy;
        times["upsampling"] = d.t_upsampling;
        times["modulation"] = d.t_modulation;
        times["synthesis"] = d.t_synthesis;
        return py::make_tuple(image, latents, times, std::string(d.kernels));
    }, py::arg("data"), py::arg("tables"), py::arg("threads") = 1, py::arg("latents_only") = false,
       py::arg("kernels") = "auto");
}
