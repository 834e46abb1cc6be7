// CUDA kernels of the C++ example: the model (weights, velocity, feature parameters) lives on the
// GPU for the whole run; only the per-sample residuals (for the loss) and, at checkpoints, the
// weights and velocity are copied to the host.
//
// The gradient kernel gives each parameter to one thread, which sums over the batch in order: no
// atomics, so every run (and every resumed run) computes bit-identical updates on a given GPU.
#include "cuda_model.hpp"
#include "regression.hpp"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace {

void cuda_check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

__global__ void init_features(uint64_t seed, int64_t d, double *omega, double *beta) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j < d) rff::feature_params(seed, j, &omega[j], &beta[j]);
}

// r[i] = ŷ(x_i) − y(x_i) for a training batch (validation: fixed grid) and phi[i*d + j].
__global__ void residuals(const float *w, const double *omega, const double *beta, int64_t d, uint64_t seed,
                          int64_t step, int64_t n, bool validation, float *phi, float *r) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    double x = validation ? rff::validation_x((int)i) : rff::sample_x(seed, step, i);
    float pred = w[d];
    for (int64_t j = 0; j < d; j++) {
        float f = rff::feature(omega[j], beta[j], d, x);
        if (phi) phi[i * d + j] = f;
        pred += w[j] * f;
    }
    r[i] = pred - (float)rff::target(x);
}

// One thread per parameter j (j == d is the bias): gradient over the batch, momentum, update.
__global__ void update(float *w, float *v, const float *phi, const float *r, int64_t d, int64_t b, float lr,
                       float momentum) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j > d) return;
    float g = 0;
    for (int64_t i = 0; i < b; i++) g += r[i] * (j == d ? 1.0f : phi[i * d + j]);
    g *= 2.0f / (float)b;
    v[j] = momentum * v[j] - lr * g;
    w[j] += v[j];
}

unsigned blocks(int64_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace

struct CudaModel::Impl {
    rff::ModelConfig hp;
    int64_t d;
    float *w = nullptr, *v = nullptr, *phi = nullptr, *r = nullptr;
    double *omega = nullptr, *beta = nullptr;
    std::vector<float> r_host;

    explicit Impl(const rff::ModelConfig &h) : hp(h), d(h.features) {
        int64_t rows = hp.batch_size > rff::kValidationPoints ? hp.batch_size : rff::kValidationPoints;
        r_host.resize((size_t)rows);
        cuda_check(cudaMalloc(&w, (size_t)(d + 1) * sizeof(float)), "cudaMalloc(w)");
        cuda_check(cudaMalloc(&v, (size_t)(d + 1) * sizeof(float)), "cudaMalloc(v)");
        cuda_check(cudaMalloc(&phi, (size_t)(hp.batch_size * d) * sizeof(float)), "cudaMalloc(phi)");
        cuda_check(cudaMalloc(&r, (size_t)rows * sizeof(float)), "cudaMalloc(r)");
        cuda_check(cudaMalloc(&omega, (size_t)d * sizeof(double)), "cudaMalloc(omega)");
        cuda_check(cudaMalloc(&beta, (size_t)d * sizeof(double)), "cudaMalloc(beta)");
        cuda_check(cudaMemset(w, 0, (size_t)(d + 1) * sizeof(float)), "cudaMemset(w)");
        cuda_check(cudaMemset(v, 0, (size_t)(d + 1) * sizeof(float)), "cudaMemset(v)");
        init_features<<<blocks(d, 128), 128>>>((uint64_t)hp.seed, d, omega, beta);
        cuda_check(cudaGetLastError(), "init_features");
    }
    ~Impl() {
        cudaFree(w);
        cudaFree(v);
        cudaFree(phi);
        cudaFree(r);
        cudaFree(omega);
        cudaFree(beta);
    }

    double mean_square(int64_t n) {
        cuda_check(cudaMemcpy(r_host.data(), r, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost), "copy residuals");
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)r_host[(size_t)i] * r_host[(size_t)i];
        return s / (double)n;
    }
};

bool cuda_device_available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

CudaModel::CudaModel(const rff::ModelConfig &hp) : impl_(new Impl(hp)) {}
CudaModel::CudaModel(CudaModel &&) noexcept = default;
CudaModel::~CudaModel() = default;

size_t CudaModel::num_params() const { return (size_t)(impl_->d + 1); }

double CudaModel::train_step(int64_t step) {
    Impl &m = *impl_;
    residuals<<<blocks(m.hp.batch_size, 128), 128>>>(m.w, m.omega, m.beta, m.d, (uint64_t)m.hp.seed, step,
                                                     m.hp.batch_size, false, m.phi, m.r);
    cuda_check(cudaGetLastError(), "residuals");
    update<<<blocks(m.d + 1, 128), 128>>>(m.w, m.v, m.phi, m.r, m.d, m.hp.batch_size, (float)m.hp.learning_rate,
                                          (float)m.hp.momentum);
    cuda_check(cudaGetLastError(), "update");
    return m.mean_square(m.hp.batch_size);  // synchronizes
}

double CudaModel::validate() {
    Impl &m = *impl_;
    residuals<<<blocks(rff::kValidationPoints, 128), 128>>>(m.w, m.omega, m.beta, m.d, (uint64_t)m.hp.seed, 0,
                                                            rff::kValidationPoints, true, nullptr, m.r);
    cuda_check(cudaGetLastError(), "residuals(validation)");
    return m.mean_square(rff::kValidationPoints);
}

void CudaModel::get_state(std::vector<float> &w, std::vector<float> &v) {
    size_t n = num_params();
    w.resize(n);
    v.resize(n);
    cuda_check(cudaMemcpy(w.data(), impl_->w, n * sizeof(float), cudaMemcpyDeviceToHost), "copy weights to host");
    cuda_check(cudaMemcpy(v.data(), impl_->v, n * sizeof(float), cudaMemcpyDeviceToHost), "copy velocity to host");
}

void CudaModel::set_state(const std::vector<float> &w, const std::vector<float> &v) {
    size_t n = num_params();
    if (w.size() != n || v.size() != n) throw std::runtime_error("CudaModel::set_state: wrong parameter count");
    cuda_check(cudaMemcpy(impl_->w, w.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy weights to GPU");
    cuda_check(cudaMemcpy(impl_->v, v.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy velocity to GPU");
}
