/* hami-e2e simulated CUDA driver: the GPUs and the memory processes hold on them.
 *
 * The GPUs are the mock NVML's (libnvidia-ml.so.1 over the node's or pod's profile), so CUDA and NVML agree on
 * count, names, UUIDs and memory. NVML is called through glibc's own dlsym: HAMi-core, when preloaded, replaces
 * dlsym and the nvml* symbols with its hooks, which report its limit instead of the card and re-enter the CUDA
 * initialisation we are part of. A driver knows its cards without asking HAMi-core.
 *
 * Memory a process holds (contexts and allocations) is published as MOCK_NVML_PROCESS_DIR/<pid>, one
 * "<GPU UUID> <bytes>" line per device; the patched mock NVML lists these processes and counts their bytes as
 * used, so nvidia-smi, HAMi-core's context-size probe and every other process see them, as on a real card.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda.h>
#include <nvml.h>

#include "mock_libcuda.h"

#define DEFAULT_CONTEXT_MIB 518ULL

typedef void *(*dlsym_fn)(void *, const char *);

static mock_device devices[MOCK_MAX_DEVICES];
static nvmlDevice_t handles[MOCK_MAX_DEVICES];
static int device_count = -1;
static int driver_version;
static __typeof__(&nvmlDeviceGetMemoryInfo) nvml_memory_info;

void mock_log(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fputs("[mock-libcuda] ", stderr);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
}

/* glibc's dlsym, bypassing any preloaded replacement. */
static dlsym_fn libc_dlsym(void) {
    static dlsym_fn found;
    if (!found) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        const char *versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", NULL};
        for (int i = 0; libc && !found && versions[i]; i++) {
            found = (dlsym_fn)dlvsym(libc, "dlsym", versions[i]);
        }
    }
    return found;
}

void *mock_real_dlsym(void *handle, const char *name) {
    dlsym_fn fn = libc_dlsym();
    return fn ? fn(handle, name) : NULL;
}

unsigned long long mock_context_bytes(void) {
    const char *mib = getenv("MOCK_CUDA_CONTEXT_MIB");
    if (mib && *mib) {
        char *end;
        unsigned long long value = strtoull(mib, &end, 10);
        if (*end == '\0') {
            return value << 20;
        }
        mock_log("MOCK_CUDA_CONTEXT_MIB=%s is not a whole number of MiB; using %llu", mib, DEFAULT_CONTEXT_MIB);
    }
    return DEFAULT_CONTEXT_MIB << 20;
}

/* CUDA_VISIBLE_DEVICES as the driver reads it: indices or (prefixes of) UUIDs, up to the first invalid entry. */
static int visible_order(int nvml_count, int order[MOCK_MAX_DEVICES], char uuids[][MOCK_UUID_LEN]) {
    const char *env = getenv("CUDA_VISIBLE_DEVICES");
    if (!env) {
        for (int i = 0; i < nvml_count; i++) {
            order[i] = i;
        }
        return nvml_count;
    }
    char list[512];
    snprintf(list, sizeof list, "%s", env);
    int count = 0;
    for (char *save = NULL, *item = strtok_r(list, ",", &save); item && count < MOCK_MAX_DEVICES;
         item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) {
            item++;
        }
        int found = -1;
        if (isdigit((unsigned char)*item)) {
            char *end;
            long index = strtol(item, &end, 10);
            found = (*end == '\0' && index < nvml_count) ? (int)index : -1;
        } else {
            for (int i = 0; i < nvml_count && found < 0; i++) {
                found = (*item && strncmp(uuids[i], item, strlen(item)) == 0) ? i : -1;
            }
        }
        if (found < 0) {
            break;
        }
        order[count++] = found;
    }
    return count;
}

#define NVML_FN(name) __typeof__(&name) name##_fn = (__typeof__(&name))mock_real_dlsym(nvml, #name)

int mock_devices_load(void) {
    if (device_count >= 0) {
        return CUDA_SUCCESS;
    }
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!nvml) {
        mock_log("cannot load libnvidia-ml.so.1 (the mock NVML that describes the GPUs): %s", dlerror());
        return CUDA_ERROR_NO_DEVICE;
    }
    NVML_FN(nvmlInit_v2);
    NVML_FN(nvmlDeviceGetCount_v2);
    NVML_FN(nvmlDeviceGetHandleByIndex_v2);
    NVML_FN(nvmlDeviceGetName);
    NVML_FN(nvmlDeviceGetUUID);
    NVML_FN(nvmlDeviceGetPciInfo_v3);
    NVML_FN(nvmlDeviceGetCudaComputeCapability);
    NVML_FN(nvmlSystemGetCudaDriverVersion_v2);
    nvml_memory_info = (__typeof__(&nvmlDeviceGetMemoryInfo))mock_real_dlsym(nvml, "nvmlDeviceGetMemoryInfo");
    if (!nvmlInit_v2_fn || !nvmlDeviceGetCount_v2_fn || !nvmlDeviceGetHandleByIndex_v2_fn || !nvmlDeviceGetName_fn ||
        !nvmlDeviceGetUUID_fn || !nvmlDeviceGetPciInfo_v3_fn || !nvmlDeviceGetCudaComputeCapability_fn ||
        !nvmlSystemGetCudaDriverVersion_v2_fn || !nvml_memory_info) {
        mock_log("libnvidia-ml.so.1 lacks an NVML function this driver reads the GPUs with");
        return CUDA_ERROR_NO_DEVICE;
    }
    unsigned int nvml_count = 0;
    nvmlReturn_t ret = nvmlInit_v2_fn();
    if (ret == NVML_SUCCESS) {
        ret = nvmlDeviceGetCount_v2_fn(&nvml_count);
    }
    if (ret != NVML_SUCCESS) {
        mock_log("NVML failed (error %d) while listing the GPUs", ret);
        return CUDA_ERROR_NO_DEVICE;
    }
    nvml_count = nvml_count > MOCK_MAX_DEVICES ? MOCK_MAX_DEVICES : nvml_count;
    nvmlSystemGetCudaDriverVersion_v2_fn(&driver_version);

    mock_device all[MOCK_MAX_DEVICES];
    nvmlDevice_t all_handles[MOCK_MAX_DEVICES];
    char uuids[MOCK_MAX_DEVICES][MOCK_UUID_LEN];
    memset(all, 0, sizeof all);
    for (unsigned int i = 0; i < nvml_count; i++) {
        mock_device *dev = &all[i];
        nvmlPciInfo_t pci;
        nvmlMemory_t memory;
        if (nvmlDeviceGetHandleByIndex_v2_fn(i, &all_handles[i]) != NVML_SUCCESS ||
            nvmlDeviceGetName_fn(all_handles[i], dev->name, sizeof dev->name) != NVML_SUCCESS ||
            nvmlDeviceGetUUID_fn(all_handles[i], dev->uuid, sizeof dev->uuid) != NVML_SUCCESS ||
            nvml_memory_info(all_handles[i], &memory) != NVML_SUCCESS) {
            mock_log("NVML cannot describe GPU %u (lost or misconfigured)", i);
            return CUDA_ERROR_NO_DEVICE;
        }
        dev->total_bytes = memory.total;
        if (nvmlDeviceGetPciInfo_v3_fn(all_handles[i], &pci) == NVML_SUCCESS) {
            snprintf(dev->pci_bus_id, sizeof dev->pci_bus_id, "%s", pci.busId);
            dev->pci_domain = pci.domain;
            dev->pci_bus = pci.bus;
            dev->pci_device = pci.device;
        }
        if (nvmlDeviceGetCudaComputeCapability_fn(all_handles[i], &dev->cc_major, &dev->cc_minor) != NVML_SUCCESS) {
            dev->cc_major = 9;
            dev->cc_minor = 0;
        }
        snprintf(uuids[i], MOCK_UUID_LEN, "%s", dev->uuid);
    }
    int order[MOCK_MAX_DEVICES];
    int visible = visible_order((int)nvml_count, order, uuids);
    for (int i = 0; i < visible; i++) {
        devices[i] = all[order[i]];
        handles[i] = all_handles[order[i]];
    }
    device_count = visible;
    return CUDA_SUCCESS;
}

int mock_device_count(void) {
    return device_count < 0 ? 0 : device_count;
}

mock_device *mock_device_at(int index) {
    return (index >= 0 && index < mock_device_count()) ? &devices[index] : NULL;
}

int mock_cuda_driver_version(void) {
    return driver_version;
}

static const char *process_dir(void) {
    const char *dir = getenv("MOCK_NVML_PROCESS_DIR");
    return (dir && *dir) ? dir : NULL;
}

unsigned long long mock_device_free(int index) {
    nvmlMemory_t memory;
    if (nvml_memory_info(handles[index], &memory) != NVML_SUCCESS) {
        return 0;
    }
    /* With a process directory NVML already counts what this process holds; without one only we know. */
    unsigned long long own = process_dir() ? 0 : devices[index].held_bytes;
    return memory.free > own ? memory.free - own : 0;
}

static void publish(void) {
    const char *dir = process_dir();
    if (!dir) {
        return;
    }
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
    snprintf(tmp, sizeof tmp, "%s/.%d.tmp", dir, (int)getpid());
    int held = 0;
    FILE *out = fopen(tmp, "w");
    if (!out) {
        mock_log("cannot publish this process's GPU memory in %s: %s", dir, strerror(errno));
        return;
    }
    for (int i = 0; i < mock_device_count(); i++) {
        if (devices[i].held_bytes) {
            fprintf(out, "%s %llu\n", devices[i].uuid, devices[i].held_bytes);
            held = 1;
        }
    }
    fclose(out);
    if (held) {
        rename(tmp, path);
    } else {
        unlink(tmp);
        unlink(path);
    }
}

void mock_device_hold(int index, long long delta) {
    devices[index].held_bytes += (unsigned long long)delta;
    publish();
}

__attribute__((destructor)) static void unpublish(void) {
    const char *dir = process_dir();
    if (dir && mock_device_count() > 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
        unlink(path);
    }
}
