// detcore.hpp as the only include, with every template instantiated, under -Wall -Wextra -Werror
// -pedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast (ctest: header_hpp_alone).
// Compiled, never run.
#include <detcore.hpp>

int header_user(det::Context &ctx);
int header_user(det::Context &ctx) {
    namespace fs = std::filesystem;
    std::string id = ctx.checkpoint().store_path(det::JsonObject().add("steps_completed", 1).add("x", 0.5f),
                                                 [](const fs::path &, const std::string &) {});
    id = ctx.checkpoint().store_path("{\"steps_completed\": 2}", [](const fs::path &, const std::string &) {}, true);
    size_t n = ctx.checkpoint().restore_path(id, [](const fs::path &p) { return p.string().size(); });
    det::StorePath s = ctx.checkpoint().store_path("{\"steps_completed\": 3}");
    s.abort();
    ctx.checkpoint().download(id, "/tmp/x", det::DownloadMode::NoSharedDownload, [](std::string_view) { return true; });
    ctx.train().report_training_metrics(1, {{"loss", 1.0}, {"steps", 3}});
    ctx.train().report_metrics("g", 1, std::map<std::string, double>{{"a", 1}});
    auto d = ctx.distributed();
    auto v = d.allgather_value(int64_t{3});
    auto b = d.broadcast_value(3.5);
    auto info = ctx.info();
    int i = info.hparam<int>("i") + info.hparam("j", 2);
    unsigned u = info.hparam<unsigned>("u");
    float f = info.hparam<float>("f") + info.hparam("g", 1.5f);
    std::string str = info.hparam<std::string>("s") + info.hparam("t", "x");
    for (det::SearcherOp &op : ctx.searcher().operations()) op.report_completed(1.0);
    det::Context other(det::Options().distributed(det::DistributedConfig::from_env()).preempt_signals({15}));
    id = ctx.checkpoint().store_path("{\"steps_completed\": 4}", [](const fs::path &, const std::string &) {}, false,
                                     det::UploadMode::Async);
    id = ctx.checkpoint().store_path("{\"steps_completed\": 5}").commit(det::UploadMode::Sync);
    uint32_t seed = info.trial_seed().value_or(0U);
    size_t lists = info.container_addrs().size() + info.container_slot_counts().size() + info.slot_ids().size() +
                   info.gpu_uuids().size();
    ctx.train().upload_tensorboard_files([](std::string_view p) { return !p.empty(); },
                                         [](std::string_view p, int32_t r) { return std::to_string(r) + "/" + std::string(p); });
    det::TensorboardWriter tb(ctx.train().get_tensorboard_path());
    tb.add_scalar("x", 1, 0.5);
    tb.add_histogram("h", 1, {1.0, 2.0});
    ctx.profiler().on(0.5, 3);
    ctx.alert("t", "d", det::AlertLevel::Warn);
    return static_cast<int>(n + v.size() + u + str.size() + seed + lists) + i + static_cast<int>(b + f);
}
