// Uses the installed C++ header.
#include <detcore.hpp>

#include <cstdio>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    std::filesystem::path dir = argv[1];
    det::Context ctx(det::Options().checkpoint_dir(dir / "c").run_dir(dir).cluster_info_dir("/nonexistent"));
    std::string id = ctx.checkpoint().store_path(det::JsonObject().add("steps_completed", 1),
                                                 [](const std::filesystem::path &p, const std::string &) {
                                                     std::FILE *f = std::fopen((p / "x").c_str(), "w");
                                                     if (f) std::fclose(f);
                                                 });
    ctx.train().report_training_metrics(1, {{"loss", 0.5}});
    ctx.close();
    std::printf("consumer_cpp ok %s\n", id.c_str());
    return 0;
}
