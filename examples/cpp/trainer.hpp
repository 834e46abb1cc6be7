// The training loop of the C++ examples on det::Context: resume from the latest checkpoint,
// train, report metrics (typed fast path), validate, checkpoint every N steps, and on preemption
// (SIGTERM/SIGUSR1, DET_HALT_FILE, the job's end time, or the master) save and exit 0.
//
// A Model provides:
//   double train_step(int64_t step)            one SGD step; returns the minibatch loss
//   double validate()                          the validation loss
//   void   get_state(std::vector<float>& w, std::vector<float>& v)   weights + velocity, on the host
//   void   set_state(const std::vector<float>& w, const std::vector<float>& v)
//   size_t num_params()
// The checkpoint format is the same for every model, so a CPU run can resume a GPU checkpoint
// and the other way round.
#ifndef DETCORE_EXAMPLE_TRAINER_HPP
#define DETCORE_EXAMPLE_TRAINER_HPP

#include "regression.hpp"

#include <detcore.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

struct Hparams {
    int64_t steps, features, batch_size, report_every, validate_every, checkpoint_every, seed;
    double learning_rate, momentum;

    static Hparams from(const det::Info &info) {
        Hparams h{};
        h.steps = info.hparam<int64_t>("steps", 3000);
        h.features = info.hparam<int64_t>("features", 128);
        h.batch_size = info.hparam<int64_t>("batch_size", 64);
        h.report_every = info.hparam<int64_t>("report_every", 20);
        h.validate_every = info.hparam<int64_t>("validate_every", 200);
        h.checkpoint_every = info.hparam<int64_t>("checkpoint_every", 500);
        h.seed = info.hparam<int64_t>("seed", 1);
        h.learning_rate = info.hparam("learning_rate", 0.05);
        h.momentum = info.hparam("momentum", 0.9);
        if (h.steps < 1 || h.features < 1 || h.batch_size < 1 || h.report_every < 1 || h.validate_every < 1 ||
            h.checkpoint_every < 1)
            throw std::invalid_argument("hyperparameters steps, features, batch_size, *_every must be positive");
        return h;
    }

    rff::ModelConfig model() const { return {features, batch_size, seed, learning_rate, momentum}; }
};

struct StateHeader {
    char magic[8];
    int64_t num_params;
    int64_t step;
};

inline uint64_t checksum(const std::vector<float> &w) {
    uint64_t h = 1469598103934665603ULL;
    const auto *b = reinterpret_cast<const unsigned char *>(w.data());
    for (size_t i = 0; i < w.size() * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

template <class Model>
void save_state(const std::filesystem::path &dir, Model &model, int64_t step) {
    std::vector<float> w, v;
    model.get_state(w, v);  // a GPU model copies to the host here
    StateHeader h{{'R', 'F', 'F', 'R', 'E', 'G', '1', 0}, static_cast<int64_t>(w.size()), step};
    std::ofstream m(dir / "model.bin", std::ios::binary), o(dir / "optimizer.bin", std::ios::binary);
    m.write(reinterpret_cast<const char *>(&h), sizeof h);
    m.write(reinterpret_cast<const char *>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
    o.write(reinterpret_cast<const char *>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    m.close();
    o.close();
    if (!m || !o) throw std::runtime_error("cannot write checkpoint files into " + dir.string());
}

/// Returns the step the checkpoint was taken at.
template <class Model>
int64_t load_state(const std::filesystem::path &dir, Model &model) {
    StateHeader h{};
    std::vector<float> w(model.num_params()), v(model.num_params());
    std::ifstream m(dir / "model.bin", std::ios::binary), o(dir / "optimizer.bin", std::ios::binary);
    m.read(reinterpret_cast<char *>(&h), sizeof h);
    if (!m || std::memcmp(h.magic, "RFFREG1", 8) != 0 || h.num_params != static_cast<int64_t>(w.size()))
        throw std::runtime_error("checkpoint in " + dir.string() + " does not match this model");
    m.read(reinterpret_cast<char *>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
    o.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    if (!m || !o) throw std::runtime_error("checkpoint in " + dir.string() + " is truncated");
    model.set_state(w, v);
    return h.step;
}

/// Train `model` to hp.steps on `ctx`. Returns the process exit code.
template <class Model>
int train(det::Context &ctx, Model &model, const Hparams &hp) {
    int64_t step = 0;
    if (std::optional<std::string> latest = ctx.info().latest_checkpoint()) {
        // The files are there while the callback runs (the restore scope spans it).
        step = ctx.checkpoint().restore_path(*latest, [&](const std::filesystem::path &dir) { return load_state(dir, model); });
        std::printf("resumed from checkpoint %s at step %" PRId64 "\n", latest->c_str(), step);
    } else {
        std::printf("starting fresh\n");
    }
    const int64_t start = step;

    auto save = [&](const char *why) {
        std::string id = ctx.checkpoint().store_path_steps(
            step, [&](const std::filesystem::path &dir, const std::string &) { save_state(dir, model, step); },
            det::JsonObject().add("reason", why));
        std::printf("checkpoint %s at step %" PRId64 " (%s)\n", id.c_str(), step, why);
        std::fflush(stdout);
    };

    det::Metrics training{{"loss", 0.0}};  // reused every report: no allocation, no JSON
    double sum_loss = 0;
    int64_t since = 0;
    while (step < hp.steps) {
        sum_loss += model.train_step(step);
        step++;
        since++;
        if (step % hp.report_every == 0) {
            training.set("loss", sum_loss / static_cast<double>(since));
            ctx.train().report_training_metrics(step, training);
            sum_loss = 0;
            since = 0;
        }
        if (step % hp.validate_every == 0 || step == hp.steps) {
            double vl = model.validate();
            ctx.train().report_validation_metrics(step, {{"validation_loss", vl}});
            ctx.train().report_progress(static_cast<double>(step) / static_cast<double>(hp.steps));
            std::printf("step %" PRId64 ": validation loss %.6f\n", step, vl);
            std::fflush(stdout);
        }
        if (step % hp.checkpoint_every == 0 && step < hp.steps) save("periodic");
        if (ctx.preempt().should_preempt() && step < hp.steps) {
            std::printf("preempted at step %" PRId64 ": saving and exiting\n", step);
            save("preempted");
            ctx.close();
            return 0;
        }
    }
    if (step > start) save("final");
    std::vector<float> w, v;
    model.get_state(w, v);
    std::printf("training finished at step %" PRId64 "; weights checksum %016" PRIx64 "\n", step, checksum(w));
    ctx.close();  // delivers the last reports; throws if it cannot
    return 0;
}

/// main() of an example: the Context from the environment (DET_HPARAMS, DET_RUN_NAME, …);
/// `make_model(const rff::ModelConfig&)` builds the model.
template <class MakeModel>
int main_with(const char *prog, MakeModel make_model) {
    try {
        det::Context ctx;
        Hparams hp = Hparams::from(ctx.info());
        auto model = make_model(hp.model());
        return train(ctx, model, hp);
    } catch (const det::Error &e) {
        std::fprintf(stderr, "%s: %s (%s)\n", prog, e.what(), e.status_name());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: %s\n", prog, e.what());
    }
    return 2;
}

}  // namespace example

#endif
