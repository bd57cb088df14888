/* gpu-workload: a GPU program for the sandbox, using only the CUDA driver API (so HAMi-core's hooks apply).
 *
 *   gpu-workload meminfo [--device N]
 *   gpu-workload alloc MIB [--device N] [--step MIB] [--hold SECONDS]
 *
 * Each result is one line on stdout of space-separated key=value fields, first word the kind of line:
 *   meminfo device=0 uuid=GPU-... name="NVIDIA H100 80GB HBM3" total_mib=3000 free_mib=2482 total_bytes=...
 *           free_bytes=...
 *   alloc device=0 mib=1000 allocated_mib=1000
 *   oom device=0 mib=4000 allocated_mib=0 error=CUDA_ERROR_OUT_OF_MEMORY
 *   hold seconds=30          (printed once the memory is held; the program then sleeps)
 *   done allocated_mib=1000
 * Failures of other driver calls print "error call=<function> code=<n> name=<CUDA_ERROR_...>" on stderr.
 *
 * Exit codes: 0 success, 2 an allocation failed with CUDA_ERROR_OUT_OF_MEMORY, 3 any other CUDA error,
 * 64 bad usage. --hold is at most 600 seconds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>

#define EXIT_OOM 2
#define EXIT_CUDA 3
#define EXIT_USAGE 64
#define MAX_HOLD_SECONDS 600
#define MAX_CHUNKS 4096
#define MIB (1ULL << 20)

typedef struct {
    const char *command;
    unsigned long long mib;
    unsigned long long step_mib;
    int device;
    long hold_seconds;
} options;

static int usage(const char *problem) {
    fprintf(stderr, "gpu-workload: %s\n"
                    "usage: gpu-workload meminfo [--device N]\n"
                    "       gpu-workload alloc MIB [--device N] [--step MIB] [--hold SECONDS (<= %d)]\n",
            problem, MAX_HOLD_SECONDS);
    return EXIT_USAGE;
}

static int cuda_failed(const char *call, CUresult result) {
    const char *name = NULL;
    cuGetErrorName(result, &name);
    fprintf(stderr, "error call=%s code=%d name=%s\n", call, (int)result, name ? name : "unknown");
    return result == CUDA_ERROR_OUT_OF_MEMORY ? EXIT_OOM : EXIT_CUDA;
}

static int parse_number(const char *text, long long low, long long high, long long *out) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || *end || end == text || value < low || value > high) {
        return 0;
    }
    *out = value;
    return 1;
}

static int parse(int argc, char **argv, options *opt) {
    long long value;
    memset(opt, 0, sizeof *opt);
    opt->device = -1;
    if (argc < 2) {
        return usage("no command");
    }
    opt->command = argv[1];
    int next = 2;
    if (strcmp(opt->command, "alloc") == 0) {
        if (argc < 3 || !parse_number(argv[2], 1, 1LL << 30, &value)) {
            return usage("alloc needs a size in MiB (a positive whole number)");
        }
        opt->mib = (unsigned long long)value;
        next = 3;
    } else if (strcmp(opt->command, "meminfo") != 0) {
        return usage("unknown command");
    }
    for (int i = next; i < argc; i += 2) {
        const char *flag = argv[i];
        if (i + 1 >= argc) {
            return usage("a flag lacks its value");
        }
        if (strcmp(flag, "--device") == 0 && parse_number(argv[i + 1], 0, 63, &value)) {
            opt->device = (int)value;
        } else if (strcmp(flag, "--step") == 0 && opt->mib && parse_number(argv[i + 1], 1, 1LL << 30, &value)) {
            opt->step_mib = (unsigned long long)value;
        } else if (strcmp(flag, "--hold") == 0 && opt->mib && parse_number(argv[i + 1], 0, MAX_HOLD_SECONDS, &value)) {
            opt->hold_seconds = (long)value;
        } else {
            return usage("unknown flag, or a value out of range");
        }
    }
    if (opt->mib && opt->step_mib && opt->mib / opt->step_mib >= MAX_CHUNKS) {
        return usage("too many steps");
    }
    return 0;
}

static int use_device(int ordinal, CUcontext *ctx) {
    CUdevice device;
    CUresult result = cuDeviceGet(&device, ordinal);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuDeviceGet", result);
    }
    result = cuDevicePrimaryCtxRetain(ctx, device);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuDevicePrimaryCtxRetain", result);
    }
    result = cuCtxSetCurrent(*ctx);
    return result == CUDA_SUCCESS ? 0 : cuda_failed("cuCtxSetCurrent", result);
}

static int print_meminfo(int ordinal) {
    char name[256];
    CUuuid id;
    size_t free_bytes, total_bytes;
    CUresult result = cuDeviceGetName(name, sizeof name, ordinal);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuDeviceGetName", result);
    }
    result = cuDeviceGetUuid(&id, ordinal);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuDeviceGetUuid", result);
    }
    result = cuMemGetInfo(&free_bytes, &total_bytes);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuMemGetInfo", result);
    }
    const unsigned char *b = (const unsigned char *)id.bytes;
    printf("meminfo device=%d uuid=GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x "
           "name=\"%s\" total_mib=%llu free_mib=%llu total_bytes=%zu free_bytes=%zu\n", ordinal, b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15], name,
           (unsigned long long)(total_bytes / MIB), (unsigned long long)(free_bytes / MIB), total_bytes, free_bytes);
    fflush(stdout);
    return 0;
}

static int meminfo(const options *opt) {
    int count = 0;
    CUresult result = cuDeviceGetCount(&count);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuDeviceGetCount", result);
    }
    for (int ordinal = 0; ordinal < count; ordinal++) {
        CUcontext ctx;
        if (opt->device >= 0 && ordinal != opt->device) {
            continue;
        }
        int code = use_device(ordinal, &ctx);
        code = code ? code : print_meminfo(ordinal);
        if (code) {
            return code;
        }
    }
    if (opt->device >= count) {
        return cuda_failed("cuDeviceGet", CUDA_ERROR_INVALID_DEVICE);
    }
    return 0;
}

static void hold(long seconds) {
    printf("hold seconds=%ld\n", seconds);
    fflush(stdout);
    struct timespec left = {seconds, 0};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

static int alloc(const options *opt) {
    static CUdeviceptr chunks[MAX_CHUNKS];
    int ordinal = opt->device < 0 ? 0 : opt->device;
    CUcontext ctx;
    int code = use_device(ordinal, &ctx);
    if (code) {
        return code;
    }
    unsigned long long step = opt->step_mib ? opt->step_mib : opt->mib;
    unsigned long long allocated = 0;
    size_t count = 0;
    while (allocated < opt->mib) {
        unsigned long long mib = opt->mib - allocated < step ? opt->mib - allocated : step;
        CUresult result = cuMemAlloc(&chunks[count], mib * MIB);
        if (result != CUDA_SUCCESS) {
            const char *name = NULL;
            cuGetErrorName(result, &name);
            printf("%s device=%d mib=%llu allocated_mib=%llu error=%s\n",
                   result == CUDA_ERROR_OUT_OF_MEMORY ? "oom" : "failed", ordinal, mib, allocated,
                   name ? name : "unknown");
            fflush(stdout);
            code = result == CUDA_ERROR_OUT_OF_MEMORY ? EXIT_OOM : cuda_failed("cuMemAlloc", result);
            break;
        }
        count++;
        allocated += mib;
        printf("alloc device=%d mib=%llu allocated_mib=%llu\n", ordinal, mib, allocated);
        fflush(stdout);
    }
    if (!code) {
        code = print_meminfo(ordinal);
    }
    if (!code && opt->hold_seconds > 0) {
        hold(opt->hold_seconds);
    }
    for (size_t i = 0; i < count; i++) {
        cuMemFree(chunks[i]);
    }
    cuDevicePrimaryCtxRelease(ordinal);
    if (!code) {
        printf("done allocated_mib=%llu\n", allocated);
    }
    return code;
}

int main(int argc, char **argv) {
    options opt;
    int code = parse(argc, argv, &opt);
    if (code) {
        return code;
    }
    CUresult result = cuInit(0);
    if (result != CUDA_SUCCESS) {
        return cuda_failed("cuInit", result);
    }
    return strcmp(opt.command, "alloc") == 0 ? alloc(&opt) : meminfo(&opt);
}
