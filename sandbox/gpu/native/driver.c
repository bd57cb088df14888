/* hami-e2e simulated CUDA driver (libcuda.so.1): the driver API that HAMi-core and our workload program use.
 *
 * Contexts and allocations are bookkeeping only: no memory is reserved, device pointers are unique fake
 * addresses. Every context takes mock_context_bytes() on its device (518 MiB by default, what an H100 context
 * takes), an allocation takes its size, and an allocation larger than the card's free memory fails with
 * CUDA_ERROR_OUT_OF_MEMORY as on a full card. Driver functions HAMi-core resolves but this file does not
 * implement come from the generated stubs.c: they print their name and return CUDA_ERROR_NOT_SUPPORTED.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "mock_libcuda.h"

#define API __attribute__((visibility("default")))
#define MAX_STACK 32
#define ADDRESS_ALIGN (2ULL << 20)

struct CUctx_st {
    int device;
    int primary;
    unsigned int flags;
};

typedef struct {
    CUdeviceptr address;
    size_t size;
    CUcontext ctx;
} allocation;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static struct CUctx_st primaries[MOCK_MAX_DEVICES];
static unsigned int primary_refs[MOCK_MAX_DEVICES];
static allocation *allocations;
static size_t allocation_count, allocation_capacity;
static CUdeviceptr next_address = 0x7f0000000000ULL;
static __thread CUcontext stack[MAX_STACK];
static __thread int depth;

/* Older entry points a driver keeps exporting; the 13.x headers map these names to newer versions. */
#undef cuDeviceGetUuid
#undef cuGetProcAddress
CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);
CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev);
CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags);

static CUresult check_device(CUdevice dev) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    return mock_device_at(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static CUcontext current(void) {
    return depth > 0 ? stack[depth - 1] : NULL;
}

/* Takes a context's memory on its device; the caller holds the lock. */
static CUresult take_context_memory(int device) {
    unsigned long long bytes = mock_context_bytes();
    if (bytes > mock_device_free(device)) {
        mock_log("no room for a %llu MiB context on device %d", bytes >> 20, device);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    mock_device_hold(device, (long long)bytes);
    return CUDA_SUCCESS;
}

/* Frees a context's allocations and its own memory; the caller holds the lock. */
static void release_context_memory(CUcontext ctx) {
    size_t kept = 0;
    for (size_t i = 0; i < allocation_count; i++) {
        if (allocations[i].ctx == ctx) {
            mock_device_hold(ctx->device, -(long long)allocations[i].size);
        } else {
            allocations[kept++] = allocations[i];
        }
    }
    allocation_count = kept;
    mock_device_hold(ctx->device, -(long long)mock_context_bytes());
}

static void forget_current(CUcontext ctx) {
    for (int i = 0; i < depth; i++) {
        if (stack[i] == ctx) {
            stack[i] = NULL;
        }
    }
}

API CUresult cuInit(unsigned int flags) {
    if (flags != 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&lock);
    CUresult result = mock_devices_load();
    if (result == CUDA_SUCCESS && mock_device_count() == 0) {
        mock_log("the GPU profile lists no (visible) GPU");
        result = CUDA_ERROR_NO_DEVICE;
    }
    initialized = result == CUDA_SUCCESS;
    pthread_mutex_unlock(&lock);
    return result;
}

API CUresult cuDriverGetVersion(int *version) {
    if (!version) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&lock);
    CUresult result = mock_devices_load();
    pthread_mutex_unlock(&lock);
    if (result == CUDA_SUCCESS) {
        *version = mock_cuda_driver_version();
    }
    return result;
}

API CUresult cuDeviceGetCount(int *count) {
    if (!count) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    *count = mock_device_count();
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (!device) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult result = check_device(ordinal);
    if (result == CUDA_SUCCESS) {
        *device = ordinal;
    }
    return result;
}

API CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !name || len <= 0) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    strncpy(name, mock_device_at(dev)->name, (size_t)len - 1);
    name[len - 1] = '\0';
    return CUDA_SUCCESS;
}

API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
    if (!bytes) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult result = check_device(dev);
    if (result == CUDA_SUCCESS) {
        *bytes = mock_device_at(dev)->total_bytes;
    }
    return result;
}

API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !uuid) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    const char *text = mock_device_at(dev)->uuid;
    text += strncmp(text, "GPU-", 4) == 0 ? 4 : 0;
    memset(uuid->bytes, 0, sizeof uuid->bytes);
    for (size_t byte = 0; byte < sizeof uuid->bytes && *text;) {
        if (*text == '-') {
            text++;
            continue;
        }
        char pair[3] = {text[0], text[1] ? text[1] : '0', '\0'};
        uuid->bytes[byte++] = (char)strtol(pair, NULL, 16);
        text += text[1] ? 2 : 1;
    }
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) {
    return cuDeviceGetUuid_v2(uuid, dev);
}

API CUresult cuDeviceGetPCIBusId(char *bus_id, int len, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !bus_id || len <= 0) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    mock_device *device = mock_device_at(dev);
    snprintf(bus_id, (size_t)len, "%04x:%02x:%02x.0", device->pci_domain, device->pci_bus, device->pci_device);
    return CUDA_SUCCESS;
}

/* An H100 SXM's figures, except what the profile says (compute capability, PCI location). */
API CUresult cuDeviceGetAttribute(int *value, CUdevice_attribute attribute, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !value) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    mock_device *device = mock_device_at(dev);
    switch (attribute) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *value = 1024; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *value = 49152; break;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: *value = 65536; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *value = 32; break;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: *value = 1980000; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *value = 132; break;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: *value = 0; break;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: *value = 1; break;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: *value = 1; break;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: *value = (int)device->pci_bus; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: *value = (int)device->pci_device; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: *value = (int)device->pci_domain; break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: *value = 2619000; break;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: *value = 5120; break;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *value = 52428800; break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: *value = 2048; break;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *value = 1; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *value = device->cc_major; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *value = device->cc_minor; break;
    default:
        mock_log("cuDeviceGetAttribute: attribute %d is not simulated: CUDA_ERROR_NOT_SUPPORTED", (int)attribute);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !pctx) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&lock);
    if (primary_refs[dev] == 0) {
        result = take_context_memory(dev);
        primaries[dev].device = dev;
        primaries[dev].primary = 1;
    }
    if (result == CUDA_SUCCESS) {
        primary_refs[dev]++;
        *pctx = &primaries[dev];
    }
    pthread_mutex_unlock(&lock);
    return result;
}

static CUresult primary_release(CUdevice dev, int reset) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS) {
        return result;
    }
    pthread_mutex_lock(&lock);
    if (primary_refs[dev] == 0) {
        result = reset ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
    } else if (reset || --primary_refs[dev] == 0) {
        primary_refs[dev] = 0;
        release_context_memory(&primaries[dev]);
        forget_current(&primaries[dev]);
    }
    pthread_mutex_unlock(&lock);
    return result;
}

API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    return primary_release(dev, 0);
}

API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
    return primary_release(dev, 1);
}

API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !flags || !active) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    *flags = primaries[dev].flags;
    *active = primary_refs[dev] > 0;
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
    CUresult result = check_device(dev);
    if (result == CUDA_SUCCESS) {
        primaries[dev].flags = flags;
    }
    return result;
}

static CUresult create_context(CUcontext *pctx, unsigned int flags, CUdevice dev) {
    CUresult result = check_device(dev);
    if (result != CUDA_SUCCESS || !pctx) {
        return result != CUDA_SUCCESS ? result : CUDA_ERROR_INVALID_VALUE;
    }
    if (depth >= MAX_STACK) {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    CUcontext ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    ctx->device = dev;
    ctx->flags = flags;
    pthread_mutex_lock(&lock);
    result = take_context_memory(dev);
    pthread_mutex_unlock(&lock);
    if (result != CUDA_SUCCESS) {
        free(ctx);
        return result;
    }
    stack[depth++] = ctx;
    *pctx = ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) {
    return create_context(pctx, flags, dev);
}

API CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags, CUdevice dev) {
    (void)params;
    return create_context(pctx, flags, dev);
}

API CUresult cuCtxDestroy_v2(CUcontext ctx) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (!ctx || ctx->primary) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    pthread_mutex_lock(&lock);
    release_context_memory(ctx);
    pthread_mutex_unlock(&lock);
    forget_current(ctx);
    if (depth > 0 && stack[depth - 1] == NULL) {
        depth--;
    }
    free(ctx);
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetCurrent(CUcontext *pctx) {
    if (!pctx) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    *pctx = current();
    return CUDA_SUCCESS;
}

API CUresult cuCtxSetCurrent(CUcontext ctx) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (depth == 0) {
        if (ctx) {
            stack[depth++] = ctx;
        }
    } else if (ctx) {
        stack[depth - 1] = ctx;
    } else {
        depth--;
    }
    return CUDA_SUCCESS;
}

API CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (!ctx || depth >= MAX_STACK) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    stack[depth++] = ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxPopCurrent_v2(CUcontext *pctx) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (depth == 0) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    CUcontext ctx = stack[--depth];
    if (pctx) {
        *pctx = ctx;
    }
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetDevice(CUdevice *device) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    CUcontext ctx = current();
    if (!ctx) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (!device) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *device = ctx->device;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSynchronize(void) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    return current() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    CUcontext ctx = current();
    if (!ctx) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (!free_bytes || !total_bytes) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&lock);
    *free_bytes = mock_device_free(ctx->device);
    *total_bytes = mock_device_at(ctx->device)->total_bytes;
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    CUcontext ctx = current();
    if (!ctx) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (!dptr || bytesize == 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult result = CUDA_SUCCESS;
    pthread_mutex_lock(&lock);
    if (bytesize > mock_device_free(ctx->device)) {
        result = CUDA_ERROR_OUT_OF_MEMORY;
    } else if (allocation_count == allocation_capacity) {
        size_t capacity = allocation_capacity ? allocation_capacity * 2 : 64;
        allocation *grown = realloc(allocations, capacity * sizeof *grown);
        if (grown) {
            allocations = grown;
            allocation_capacity = capacity;
        } else {
            result = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (result == CUDA_SUCCESS) {
        allocation entry = {next_address, bytesize, ctx};
        allocations[allocation_count++] = entry;
        next_address += (bytesize + ADDRESS_ALIGN - 1) / ADDRESS_ALIGN * ADDRESS_ALIGN;
        mock_device_hold(ctx->device, (long long)bytesize);
        *dptr = entry.address;
    }
    pthread_mutex_unlock(&lock);
    return result;
}

API CUresult cuMemFree_v2(CUdeviceptr dptr) {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    CUresult result = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < allocation_count; i++) {
        if (allocations[i].address == dptr) {
            mock_device_hold(allocations[i].ctx->device, -(long long)allocations[i].size);
            allocations[i] = allocations[--allocation_count];
            result = CUDA_SUCCESS;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return result;
}

/* The newest version of a driver function this library exports, as the real driver's table lookup does. */
static void *lookup(const char *symbol, int cuda_version) {
    Dl_info info;
    if (!dladdr((void *)cuInit, &info)) {
        return NULL;
    }
    void *self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!self) {
        return NULL;
    }
    const char *suffixes[] = {"_v4", "_v3", "_v2", "", NULL};
    if (strcmp(symbol, "cuCtxCreate") == 0 && cuda_version < 12050) {
        suffixes[0] = "_v2";
    }
    void *found = NULL;
    char name[256];
    for (int i = 0; !found && suffixes[i]; i++) {
        snprintf(name, sizeof name, "%s%s", symbol, suffixes[i]);
        found = mock_real_dlsym(self, name);
    }
    dlclose(self);
    return found;
}

API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags,
                                 CUdriverProcAddressQueryResult *status) {
    (void)flags;
    if (!symbol || !pfn) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *pfn = lookup(symbol, cuda_version);
    if (status) {
        *status = *pfn ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    }
    return *pfn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags) {
    return cuGetProcAddress_v2(symbol, pfn, cuda_version, flags, NULL);
}

static const struct {
    CUresult code;
    const char *name;
    const char *text;
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
};

static CUresult describe(CUresult error, const char **out, int want_name) {
    if (!out) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        if (errors[i].code == error) {
            *out = want_name ? errors[i].name : errors[i].text;
            return CUDA_SUCCESS;
        }
    }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuGetErrorName(CUresult error, const char **name) {
    return describe(error, name, 1);
}

API CUresult cuGetErrorString(CUresult error, const char **text) {
    return describe(error, text, 0);
}
