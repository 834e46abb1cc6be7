// The CUDA variant of train.cpp: the same loop (trainer.hpp) with the model kept on the GPU
// (cuda_model.cu). At each checkpoint the weights are copied to the host and written by the
// host; at a restore they are read on the host and copied back to the GPU. Its checkpoints have
// the CPU example's format, so either program resumes the other's run.
//
// Built only when CMake finds a CUDA compiler (examples/CMakeLists.txt). Exits 77 when the
// machine has no CUDA device.
#include "cuda_model.hpp"
#include "trainer.hpp"

#include <cstdio>

int main() {
    if (!cuda_device_available()) {
        std::fprintf(stderr, "train_cuda: no CUDA device is available; nothing to do\n");
        return 77;  // "skipped" for ctest (SKIP_RETURN_CODE)
    }
    return example::main_with("train_cuda", [](const rff::ModelConfig &hp) { return CudaModel(hp); });
}
