// The CUDA model of the C++ example, behind a plain C++ interface (no CUDA types, no detcore), so
// that the training loop and detcore.hpp are compiled by the host compiler and only cuda_model.cu
// (which needs neither detcore nor C++17) by nvcc.
#ifndef DETCORE_EXAMPLE_CUDA_MODEL_HPP
#define DETCORE_EXAMPLE_CUDA_MODEL_HPP

#include "regression.hpp"

#include <cstddef>

#include <memory>
#include <vector>

/// True when the CUDA runtime sees at least one device.
bool cuda_device_available();

class CudaModel {
public:
    explicit CudaModel(const rff::ModelConfig &hp);
    CudaModel(CudaModel &&) noexcept;
    ~CudaModel();

    size_t num_params() const;
    double train_step(int64_t step);
    double validate();
    /// Copies the weights and the optimizer state from the GPU to the host (for a checkpoint).
    void get_state(std::vector<float> &w, std::vector<float> &v);
    /// Copies them from the host to the GPU (after a restore).
    void set_state(const std::vector<float> &w, const std::vector<float> &v);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

#endif
