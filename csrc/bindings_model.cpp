// Binding of llama_mtp::Model (csrc/model.h): type conversion and GIL release only.
#include <pybind11/stl.h>

#include "backend.h"
#include "bindings.h"
#include "gil.h"
#include "model.h"
#include "rpc.h"

namespace py = pybind11;

namespace llama_mtp {

namespace {

py::typing::List<StrDict> device_dicts(const std::vector<DeviceInfo>& infos) {
    py::typing::List<StrDict> out;
    for (const auto& d : infos) {
        StrDict dev;
        dev["name"] = d.name;
        dev["description"] = d.description;
        dev["type"] = d.type;
        dev["memory_total"] = d.memory_total;
        dev["memory_free"] = d.memory_free;
        out.append(dev);
    }
    return out;
}

}  // namespace

void bind_model(py::module_& m) {
    m.def("rpc_serve", &serve_rpc, py::arg("host"), py::arg("port"), py::arg("cache_dir"), py::arg("n_threads"),
          py::arg("devices"), py::call_guard<GilRelease>(),
          "Serve ggml-rpc clients on host:port until the process ends (llama.cpp's rpc-server); "
          "raises if it cannot listen.");
    m.def("rpc_server_devices", [](const std::string& endpoint) {
        std::vector<DeviceInfo> infos;
        {
            GilRelease release;
            for (auto* dev : connect_rpc_server(endpoint).devices) infos.push_back(describe_device(dev));
        }
        return device_dicts(infos);
    }, py::arg("endpoint"), "The devices an RPC server offers (connects to it).");

    m.def("buffer_type_names", [] { return buffer_type_names(); },
          "Buffer types an override_tensor pattern may name on this machine (every device's default "
          "buffer type; an RPC server's, 'RPC0[host:port]', once a model uses it).");

    py::class_<ModelOptions>(m, "ModelOptions", "Options for loading a model.")
        .def(py::init<>())
        .def_readwrite("n_gpu_layers", &ModelOptions::n_gpu_layers)
        .def_readwrite("main_gpu", &ModelOptions::main_gpu)
        .def_readwrite("split_mode", &ModelOptions::split_mode)
        .def_readwrite("tensor_split", &ModelOptions::tensor_split)
        .def_readwrite("rpc_servers", &ModelOptions::rpc_servers)
        .def_readwrite("override_tensor", &ModelOptions::override_tensor)
        .def_readwrite("cpu_moe", &ModelOptions::cpu_moe)
        .def_readwrite("n_cpu_moe", &ModelOptions::n_cpu_moe)
        .def_readwrite("vocab_only", &ModelOptions::vocab_only)
        .def_readwrite("use_mmap", &ModelOptions::use_mmap)
        .def_readwrite("use_mlock", &ModelOptions::use_mlock)
        .def_readwrite("check_tensors", &ModelOptions::check_tensors)
        .def_readwrite("no_alloc", &ModelOptions::no_alloc)
        .def_readwrite("load_mtp", &ModelOptions::load_mtp);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A loaded GGUF model (native handle).")
        .def(py::init([](const std::string& path, const ModelOptions& options) {
                 GilRelease release;
                 return std::shared_ptr<Model>(new Model(path, options), DeleteWithoutGil{});
             }),
             py::arg("path"), py::arg("options"))
        .def("close", &Model::close, py::call_guard<GilRelease>())
        .def_property_readonly("closed", &Model::closed)
        .def_property_readonly("arch", &Model::arch)
        .def_property_readonly("n_params", &Model::n_params)
        .def_property_readonly("model_size", &Model::model_size)
        .def_property_readonly("n_vocab", &Model::n_vocab)
        .def_property_readonly("n_ctx_train", &Model::n_ctx_train)
        .def_property_readonly("n_embd", &Model::n_embd)
        .def_property_readonly("n_layer", &Model::n_layer)
        .def_property_readonly("n_mtp_layers", &Model::n_mtp_layers)
        .def_property_readonly("mtp_loaded", &Model::mtp_loaded)
        .def_property_readonly("description", &Model::description)
        .def_property_readonly("bos", &Model::bos)
        .def_property_readonly("eos", &Model::eos)
        .def_property_readonly("eot", &Model::eot)
        .def(
            "gguf",
            [](const Model& self, size_t max_array_items) { return gguf_to_dict(self.file(), max_array_items); },
             py::arg("max_array_items") = static_cast<size_t>(-1),
             "The file's header, metadata and tensor table as read when it was loaded (no disk read).")
        .def("devices", [](const Model& self) {
            std::vector<DeviceInfo> infos;
            {
                GilRelease release;  // an RPC device answers over the network
                for (auto* dev : self.placement().used_devices()) infos.push_back(describe_device(dev));
            }
            return device_dicts(infos);
        }, "The offload devices the weights are spread over (empty: CPU only).")
        .def("chat_template", &Model::chat_template, py::arg("name") = std::string())
        .def("is_eog", &Model::is_eog, py::arg("token"))
        .def("tokenize", &Model::tokenize, py::arg("text"), py::arg("add_special"),
             py::arg("parse_special"), py::call_guard<GilRelease>())
        .def(
            "detokenize",
            [](const Model& self, const std::vector<llama_token>& tokens, bool remove_special,
               bool unparse_special) {
                std::string text;
                {
                    GilRelease release;
                    text = self.detokenize(tokens, remove_special, unparse_special);
                }
                return py::bytes(text);
            },
            py::arg("tokens"), py::arg("remove_special"), py::arg("unparse_special"))
        .def(
            "token_to_piece",
            [](const Model& self, llama_token token, bool special) {
                return py::bytes(self.token_to_piece(token, special));
            },
            py::arg("token"), py::arg("special"));
}

}  // namespace llama_mtp
