// A C++ training program on detcore's RAII API (include/detcore.hpp): regression with random
// Fourier features and SGD + momentum on the CPU. The loop — resume, metrics, checkpoints,
// preemption — is in trainer.hpp, shared with the CUDA variant (train_cuda.cpp + cuda_model.cu).
//
//   DET_HPARAMS='{"steps": 3000}' DET_RUN_NAME=demo ./train_cpp
//   (SIGTERM it, run it again: it resumes from its last checkpoint and ends with the same weights)
#include "regression.hpp"
#include "trainer.hpp"

#include <vector>

namespace {

class CpuModel {
public:
    explicit CpuModel(const rff::ModelConfig &hp)
        : hp_(hp), d_(hp.features), w_(static_cast<size_t>(d_ + 1)), v_(w_.size()), omega_(w_.size()), beta_(w_.size()),
          phi_(static_cast<size_t>(hp.batch_size * d_)), r_(static_cast<size_t>(hp.batch_size)) {
        for (int64_t j = 0; j < d_; j++) rff::feature_params(static_cast<uint64_t>(hp.seed), j, &omega_[j], &beta_[j]);
    }

    size_t num_params() const { return w_.size(); }

    double train_step(int64_t step) {
        const int64_t b = hp_.batch_size;
        double loss = 0;
        for (int64_t i = 0; i < b; i++) {
            double x = rff::sample_x(static_cast<uint64_t>(hp_.seed), step, i);
            float pred = w_[d_];
            for (int64_t j = 0; j < d_; j++) {
                float f = rff::feature(omega_[j], beta_[j], d_, x);
                phi_[i * d_ + j] = f;
                pred += w_[j] * f;
            }
            float r = pred - static_cast<float>(rff::target(x));
            r_[i] = r;
            loss += static_cast<double>(r) * r;
        }
        // Same order of operations as the CUDA kernel: one parameter at a time, over the batch.
        for (int64_t j = 0; j <= d_; j++) {
            float g = 0;
            for (int64_t i = 0; i < b; i++) g += r_[i] * (j == d_ ? 1.0f : phi_[i * d_ + j]);
            g *= 2.0f / static_cast<float>(b);
            v_[j] = static_cast<float>(hp_.momentum) * v_[j] - static_cast<float>(hp_.learning_rate) * g;
            w_[j] += v_[j];
        }
        return loss / static_cast<double>(b);
    }

    double validate() const {
        double sum = 0;
        for (int k = 0; k < rff::kValidationPoints; k++) {
            double x = rff::validation_x(k);
            float pred = w_[d_];
            for (int64_t j = 0; j < d_; j++) pred += w_[j] * rff::feature(omega_[j], beta_[j], d_, x);
            double r = static_cast<double>(pred) - rff::target(x);
            sum += r * r;
        }
        return sum / rff::kValidationPoints;
    }

    void get_state(std::vector<float> &w, std::vector<float> &v) const {
        w = w_;
        v = v_;
    }
    void set_state(const std::vector<float> &w, const std::vector<float> &v) {
        w_ = w;
        v_ = v;
    }

private:
    rff::ModelConfig hp_;
    int64_t d_;
    std::vector<float> w_, v_;
    std::vector<double> omega_, beta_;
    std::vector<float> phi_, r_;
};

}  // namespace

int main() {
    return example::main_with("train_cpp", [](const rff::ModelConfig &hp) { return CpuModel(hp); });
}
