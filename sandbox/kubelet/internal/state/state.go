// Package state keeps each admitted container's Allocate response on disk, one JSON file per pod container:
// STATE_DIR/<pod-uid>/<container-name>.json. The node agent reads these files to give a container's processes the
// environment and mounts the device plugin asked for; this binary reads them back after a restart to know which
// device IDs are in use.
package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Mount is one bind mount a device plugin asked for (pluginapi.Mount).
type Mount struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
	ReadOnly      bool   `json:"readOnly"`
}

// Device is one device node a device plugin asked for (pluginapi.DeviceSpec).
type Device struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
	Permissions   string `json:"permissions"`
}

// Container is what one pod container was given by the device plugins, as the kubelet would hand it to the
// container runtime. Resource and DeviceIDs name the container's device-plugin resource; Resources lists every
// device-plugin resource of the container (one entry in the usual case). Envs, Mounts, Devices and Annotations are
// merged over those resources in resource-name order, as the kubelet merges them.
type Container struct {
	Namespace   string              `json:"namespace"`
	Pod         string              `json:"pod"`
	UID         types.UID           `json:"uid"`
	Container   string              `json:"container"`
	Resource    string              `json:"resource"`
	DeviceIDs   []string            `json:"deviceIDs"`
	Resources   map[string][]string `json:"resources"`
	Envs        map[string]string   `json:"envs"`
	Mounts      []Mount             `json:"mounts"`
	Devices     []Device            `json:"devices"`
	Annotations map[string]string   `json:"annotations"`
}

// NewContainer starts the record of one container, before any resource is added.
func NewContainer(namespace, pod string, uid types.UID, container string) *Container {
	return &Container{
		Namespace: namespace, Pod: pod, UID: uid, Container: container,
		DeviceIDs: []string{}, Resources: map[string][]string{}, Envs: map[string]string{},
		Mounts: []Mount{}, Devices: []Device{}, Annotations: map[string]string{},
	}
}

// Add merges one resource's device IDs and container Allocate response into the record.
func (c *Container) Add(resource string, ids []string, resp *pluginapi.ContainerAllocateResponse) {
	if c.Resource == "" {
		c.Resource = resource
		c.DeviceIDs = append([]string(nil), ids...)
	}
	c.Resources[resource] = append([]string(nil), ids...)
	for k, v := range resp.GetEnvs() {
		c.Envs[k] = v
	}
	for _, m := range resp.GetMounts() {
		c.Mounts = append(c.Mounts, Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, d := range resp.GetDevices() {
		c.Devices = append(c.Devices, Device{ContainerPath: d.ContainerPath, HostPath: d.HostPath, Permissions: d.Permissions})
	}
	for k, v := range resp.GetAnnotations() {
		c.Annotations[k] = v
	}
}

// Dir is the state directory.
type Dir string

func (d Dir) podDir(uid types.UID) string { return filepath.Join(string(d), string(uid)) }

// Path is where a container's record lives.
func (d Dir) Path(uid types.UID, container string) string {
	return filepath.Join(d.podDir(uid), container+".json")
}

// Write stores a container's record atomically (a temporary file renamed into place).
func (d Dir) Write(c *Container) error {
	dir := d.podDir(c.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), d.Path(c.UID, c.Container))
}

// RemovePod deletes every record of a pod.
func (d Dir) RemovePod(uid types.UID) error {
	if uid == "" {
		return nil
	}
	return os.RemoveAll(d.podDir(uid))
}

// Load reads every stored record, by pod UID. A file that cannot be read is reported in the error list and
// skipped, so one damaged file does not hide the others.
func (d Dir) Load() (map[types.UID][]*Container, []error) {
	out := map[types.UID][]*Container{}
	var errs []error
	pods, err := os.ReadDir(string(d))
	if err != nil {
		if os.IsNotExist(err) {
			return out, nil
		}
		return out, []error{err}
	}
	for _, pod := range pods {
		if !pod.IsDir() {
			continue
		}
		files, err := filepath.Glob(filepath.Join(string(d), pod.Name(), "*.json"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sort.Strings(files)
		for _, file := range files {
			if strings.HasPrefix(filepath.Base(file), ".") {
				continue
			}
			c, err := readContainer(file)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[types.UID(pod.Name())] = append(out[types.UID(pod.Name())], c)
		}
	}
	return out, errs
}

func readContainer(file string) (*Container, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c Container
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("state file %s: %w", file, err)
	}
	if c.Container == "" || c.Resources == nil {
		return nil, fmt.Errorf("state file %s: no container name or resources", file)
	}
	return &c, nil
}
