// GPU workload of the hami-e2e GPU host tier: the CUDA C fallback used when neither PyTorch nor CuPy is
// importable. Same modes, output lines and exit codes as gpu_workload.py (see there).
//
//   gpu_workload info  <device>
//   gpu_workload alloc <device> <mib>
//   gpu_workload hold  <device> <mib> <max-seconds>
//   gpu_workload burn  <device> <seconds>
//
// The library compiles it at run time with `nvcc -O2 -o <tmp>/gpu_workload gpu_workload.cu`.
#include <cuda_runtime.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const size_t MIB = 1024UL * 1024UL;
static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int) { stop_requested = 1; }

static double now_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int report_cuda_error(const char *what, int device, long mib, cudaError_t err) {
    const int oom = err == cudaErrorMemoryAllocation;
    printf("ALLOC_FAILED device=%d mib=%ld reason=%s error=%s: %s (%s)\n", device, mib, oom ? "oom" : "error", what,
           cudaGetErrorName(err), cudaGetErrorString(err));
    fflush(stdout);
    return oom ? 2 : 3;
}

__global__ void fma_loop(float *out, int rounds) {
    float a = threadIdx.x * 1e-3f, b = 1.0001f, c = 0.9999f, d = blockIdx.x * 1e-3f;
    for (int i = 0; i < rounds; ++i) {
        a = fmaf(a, b, c);
        d = fmaf(d, c, b);
        a = fmaf(a, c, d);
        d = fmaf(d, b, a);
    }
    if (a + d == 12345.0f) out[0] = a + d;  // keeps the loop from being optimised away
}

static int do_info(int device) {
    int count = 0;
    cudaGetDeviceCount(&count);
    printf("DEVICES count=%d\n", count);
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return report_cuda_error("cudaSetDevice", device, 0, err);
    size_t free_b = 0, total_b = 0;
    err = cudaMemGetInfo(&free_b, &total_b);
    if (err != cudaSuccess) return report_cuda_error("cudaMemGetInfo", device, 0, err);
    printf("MEMINFO device=%d total_mib=%zu free_mib=%zu\n", device, total_b / MIB, free_b / MIB);
    return 0;
}

static int do_alloc(int device, long mib, double hold_seconds) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return report_cuda_error("cudaSetDevice", device, mib, err);
    void *buf = NULL;
    err = cudaMalloc(&buf, (size_t)mib * MIB);
    if (err != cudaSuccess) return report_cuda_error("cudaMalloc", device, mib, err);
    err = cudaMemset(buf, 1, (size_t)mib * MIB);
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (err != cudaSuccess) return report_cuda_error("cudaMemset", device, mib, err);
    if (hold_seconds < 0) {
        printf("ALLOC_OK device=%d mib=%ld\n", device, mib);
        cudaFree(buf);
        return 0;
    }
    printf("HOLDING device=%d mib=%ld\n", device, mib);
    fflush(stdout);
    const double deadline = now_seconds() + hold_seconds;
    struct timespec pause = {0, 50 * 1000 * 1000};
    while (!stop_requested && now_seconds() < deadline) nanosleep(&pause, NULL);
    cudaFree(buf);
    printf("RELEASED device=%d mib=%ld\n", device, mib);
    return 0;
}

static int do_burn(int device, double seconds) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return report_cuda_error("cudaSetDevice", device, 0, err);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    float *out = NULL;
    err = cudaMalloc(&out, sizeof(float));
    if (err != cudaSuccess) return report_cuda_error("cudaMalloc", device, 0, err);
    const int blocks = sms * 8, threads = 256, rounds = 4096;
    const double flops_per_launch = 2.0 * 4.0 * rounds * (double)blocks * threads;
    for (int i = 0; i < 3; ++i) fma_loop<<<blocks, threads>>>(out, rounds);
    cudaDeviceSynchronize();
    long launches = 0;
    const double start = now_seconds();
    double elapsed = 0;
    do {
        for (int i = 0; i < 20; ++i) fma_loop<<<blocks, threads>>>(out, rounds);
        err = cudaDeviceSynchronize();
        if (err != cudaSuccess) return report_cuda_error("fma_loop", device, 0, err);
        launches += 20;
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    printf("THROUGHPUT device=%d value=%.3f unit=TFLOP/s seconds=%.3f iterations=%ld\n", device,
           flops_per_launch * launches / elapsed / 1e12, elapsed, launches);
    cudaFree(out);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    printf("WORKLOAD kind=cuda-c version=%d\n", runtime);
    if (argc >= 3 && strcmp(argv[1], "info") == 0) return do_info(atoi(argv[2]));
    if (argc >= 4 && strcmp(argv[1], "alloc") == 0) return do_alloc(atoi(argv[2]), atol(argv[3]), -1);
    if (argc >= 5 && strcmp(argv[1], "hold") == 0) return do_alloc(atoi(argv[2]), atol(argv[3]), atof(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "burn") == 0) return do_burn(atoi(argv[2]), atof(argv[3]));
    fprintf(stderr, "usage: %s info <dev> | alloc <dev> <mib> | hold <dev> <mib> <max-s> | burn <dev> <s>\n",
            argv[0]);
    return 4;
}
