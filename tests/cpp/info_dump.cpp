// Prints what det::Info knows (one `key=value` line each; `<none>` for std::nullopt), and
// det::cluster_info_json(); in a trial it also sends one alert, stores a checkpoint and reports it
// with the experimental calls, and uploads the TensorBoard folder in MANUAL mode. Run on-cluster
// against the fake master by tests/python/test_bindings_oncluster.py, which compares the lines
// with determined's ClusterInfo read from the same info files.
#include <detcore.hpp>

#include <iostream>
#include <string>
#include <vector>

template <class T>
static std::string text(const T &v) {
    if constexpr (std::is_same_v<T, std::string>) return v;
    else return std::to_string(v);
}

template <class T>
static void line(const char *key, const std::optional<T> &v) {
    std::cout << key << "=" << (v ? text(*v) : std::string("<none>")) << "\n";
}

template <class T>
static void list(const char *key, const std::vector<T> &v) {
    std::cout << key << "=";
    for (size_t i = 0; i < v.size(); i++) std::cout << (i ? "," : "") << text(v[i]);
    std::cout << "\n";
}

int main() {
    try {
        det::Context ctx(det::Options().tensorboard_mode(det::TensorboardMode::Manual).disable_signal_handlers());
        auto info = ctx.info();
        std::cout << "on_cluster=" << info.on_cluster() << "\n";
        line("trial_id", info.trial_id());
        line("experiment_id", info.experiment_id());
        line("trial_seed", info.trial_seed());
        line("trial_run_id", info.trial_run_id());
        line("task_type", info.task_type());
        line("task_id", info.task_id());
        line("allocation_id", info.allocation_id());
        line("cluster_id", info.cluster_id());
        line("agent_id", info.agent_id());
        line("master_url", info.master_url());
        line("container_rank", info.container_rank());
        line("user_data_json", info.user_data_json());
        line("experiment_config_json", info.experiment_config_json());
        list("container_addrs", info.container_addrs());
        list("container_slot_counts", info.container_slot_counts());
        list("slot_ids", info.slot_ids());
        list("gpu_uuids", info.gpu_uuids());
        if (auto d = info.trial_debug()) std::cout << "trial_debug=" << (*d ? "true" : "false") << "\n";
        else std::cout << "trial_debug=<none>\n";
        line("inter_node_network_interface", info.inter_node_network_interface());
        line("cluster_info_json", det::cluster_info_json());
        if (info.task_type() != std::optional<std::string>("TRIAL")) return 0;  // no alerts, no TensorBoard
        std::cout << "tensorboard_path=" << ctx.train().get_tensorboard_path().string() << "\n";
        ctx.alert("from C++", "info_dump", det::AlertLevel::Warn);
        std::string id = ctx.checkpoint().store_path(det::JsonObject().add("steps_completed", 1),
                                                     [](const std::filesystem::path &, const std::string &) {});
        ctx.experimental().report_task_using_checkpoint(id);
        ctx.experimental().report_task_using_model_version(id, 5, 3);
        {
            det::TensorboardWriter tb(ctx.train().get_tensorboard_path());
            tb.add_scalar("cpp/x", 1, 0.5);
        }
        ctx.train().upload_tensorboard_files({}, [](std::string_view p, int32_t rank) {
            return "cpp-rank" + std::to_string(rank) + "/" + std::string(p);
        });
        ctx.train().flush_tensorboard(30);
        ctx.close();
    } catch (const det::Error &e) {
        std::cerr << "info_dump: " << e.status_name() << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
