// The learning problem of the C++ examples, shared by the CPU and the CUDA model: fit
//   y(x) = sin(2πx) + 0.3·sin(6πx),  x ∈ [0, 1)
// with random Fourier features φ_j(x) = sqrt(2/D)·cos(ω_j·x + β_j), j < D, and a bias:
//   ŷ(x) = b + Σ_j w_j φ_j(x),  loss = mean (ŷ − y)².
// Every random number is a pure function of (seed, step, index), so a run that is interrupted and
// resumed from a checkpoint computes exactly the same updates as one that is not.
#ifndef DETCORE_EXAMPLE_REGRESSION_HPP
#define DETCORE_EXAMPLE_REGRESSION_HPP

#include <cmath>
#include <math.h>
#include <cstdint>

#ifdef __CUDACC__
#define RFF_HD __host__ __device__
#else
#define RFF_HD
#endif

namespace rff {

constexpr double kPi = 3.141592653589793;

/// What a model needs to know (the hyperparameters that shape it).
struct ModelConfig {
    int64_t features, batch_size, seed;
    double learning_rate, momentum;
};
constexpr int kValidationPoints = 512;

RFF_HD inline uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/// A uniform double in [0, 1) from three integers.
RFF_HD inline double uniform(uint64_t seed, uint64_t a, uint64_t b) {
    return (double)(mix(mix(mix(seed) ^ a) ^ b) >> 11) * (1.0 / 9007199254740992.0);
}

RFF_HD inline double target(double x) { return sin(2.0 * kPi * x) + 0.3 * sin(6.0 * kPi * x); }

/// Frequency and phase of feature j.
RFF_HD inline void feature_params(uint64_t seed, int64_t j, double *omega, double *beta) {
    double u1 = uniform(seed, 0xfeed, (uint64_t)j) + 1e-12, u2 = uniform(seed, 0xbeef, (uint64_t)j);
    *omega = 12.0 * sqrt(-2.0 * log(u1)) * cos(2.0 * kPi * u2);  // ω ~ N(0, 12²)
    *beta = 2.0 * kPi * uniform(seed, 0xcafe, (uint64_t)j);
}

RFF_HD inline float feature(double omega, double beta, int64_t d, double x) {
    return (float)(sqrt(2.0 / (double)d) * cos(omega * x + beta));
}

/// Training input i of step `step`.
RFF_HD inline double sample_x(uint64_t seed, int64_t step, int64_t i) {
    return uniform(seed, 0x5eed0000ULL + (uint64_t)step, (uint64_t)i);
}

/// Validation input k (a fixed grid).
RFF_HD inline double validation_x(int k) { return ((double)k + 0.5) / kValidationPoints; }

}  // namespace rff

#endif
