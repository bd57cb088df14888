/* hami-e2e simulated CUDA driver (libcuda.so.1): internal interface between its two halves.
 *
 * devices.c knows the GPUs (read from the mock NVML, which reads the node's profile) and how much memory each
 * process holds on them (published for the mock NVML to report); driver.c implements the driver API on top.
 */
#ifndef HAMI_E2E_MOCK_LIBCUDA_H
#define HAMI_E2E_MOCK_LIBCUDA_H

#include <stddef.h>

#define MOCK_MAX_DEVICES 16
#define MOCK_NAME_LEN 96
#define MOCK_UUID_LEN 96

typedef struct {
    char name[MOCK_NAME_LEN];
    char uuid[MOCK_UUID_LEN];
    char pci_bus_id[32];
    unsigned int pci_domain, pci_bus, pci_device;
    int cc_major, cc_minor;
    unsigned long long total_bytes;
    unsigned long long held_bytes; /* this process: contexts + allocations */
} mock_device;

/* glibc's dlsym, even when a preloaded library (HAMi-core) replaces dlsym. */
void *mock_real_dlsym(void *handle, const char *name);

/* Prints "[mock-libcuda] <message>" on stderr. */
void mock_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads libnvidia-ml.so.1 and reads the GPUs; 0 on success, else a CUresult, with a stderr line saying why. */
int mock_devices_load(void);
int mock_device_count(void);
mock_device *mock_device_at(int index);
int mock_cuda_driver_version(void);

/* Free bytes on the card as every process sees it (profile free minus what all processes hold). */
unsigned long long mock_device_free(int index);

/* Adds (or, negative, removes) bytes this process holds on a device and republishes them. */
void mock_device_hold(int index, long long delta);

/* Bytes a context takes on its device: MOCK_CUDA_CONTEXT_MIB (default 518, an H100's measured context). */
unsigned long long mock_context_bytes(void);

#endif
