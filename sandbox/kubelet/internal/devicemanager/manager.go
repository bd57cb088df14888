// Package devicemanager is the device-plugin side of a kubelet for one node: it serves the Registration service on
// kubelet.sock, connects to each plugin that registers, and follows its ListAndWatch stream to know every
// resource's devices and their health. It follows the kubelet's devicemanager (pkg/kubelet/cm/devicemanager of
// Kubernetes v1.36): a plugin whose stream ends keeps its devices as unhealthy (capacity kept, allocatable 0) until
// it registers again; a new registration of a resource replaces the old plugin connection.
package devicemanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// KubeletSocket is the Registration socket's file name inside the device-plugin directory.
const KubeletSocket = "kubelet.sock"

// connectTimeout bounds dialing a registering plugin and asking its options, as the kubelet's 10 s dial timeout.
const connectTimeout = 10 * time.Second

// Count is a resource's device count as the node status shows it.
type Count struct {
	Capacity    int64
	Allocatable int64
}

type resource struct {
	plugin  *Plugin         // nil while the plugin is disconnected
	devices map[string]bool // device ID -> healthy
}

// Manager holds the registered resources of one node.
type Manager struct {
	pluginapi.UnimplementedRegistrationServer

	dir      string
	onChange func()

	mu        sync.Mutex
	resources map[string]*resource
	closing   bool // set at shutdown: streams that end then are not a plugin's death
}

// New returns a Manager for the device-plugin directory dir (NODE_ROOT/var/lib/kubelet/device-plugins). onChange
// is called after any change of devices or health (it must not block).
func New(dir string, onChange func()) *Manager {
	return &Manager{dir: dir, onChange: onChange, resources: map[string]*resource{}}
}

// SocketPath is the Registration socket.
func (m *Manager) SocketPath() string { return filepath.Join(m.dir, KubeletSocket) }

// Serve listens on kubelet.sock (replacing a stale socket, so plugins that watch it re-register) and serves
// Registration until ctx ends; then it stops, closes every plugin connection and removes the socket.
func (m *Manager) Serve(ctx context.Context) error {
	if err := os.MkdirAll(m.dir, 0o750); err != nil {
		return fmt.Errorf("create the device-plugin directory: %w", err)
	}
	sock := m.SocketPath()
	if err := checkSocketPath(sock); err != nil {
		return err
	}
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove the stale socket %s: %w", sock, err)
	}
	listener, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	server := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(server, m)
	klog.InfoS("Serving the device plugin Registration service", "socket", sock, "version", pluginapi.Version)
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	select {
	case <-ctx.Done():
		server.Stop()
		<-served
	case err = <-served:
	}
	m.closeAll()
	if rmErr := os.Remove(sock); rmErr != nil && !os.IsNotExist(rmErr) {
		klog.ErrorS(rmErr, "Could not remove the Registration socket", "socket", sock)
	}
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("registration server on %s: %w", sock, err)
	}
	return nil
}

// Register is the Registration service: it checks the request, connects to the plugin's endpoint, asks its
// options and starts following its ListAndWatch stream.
func (m *Manager) Register(ctx context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	klog.InfoS("Got registration request from device plugin", "resourceName", r.ResourceName,
		"endpoint", r.Endpoint, "version", r.Version)
	if err := validate(r); err != nil {
		klog.ErrorS(err, "Bad registration request from device plugin", "resourceName", r.ResourceName)
		return &pluginapi.Empty{}, err
	}
	socket := filepath.Join(m.dir, r.Endpoint)
	if err := checkSocketPath(socket); err != nil {
		klog.ErrorS(err, "Bad registration request from device plugin", "resourceName", r.ResourceName)
		return &pluginapi.Empty{}, err
	}
	plugin, err := connect(ctx, r.ResourceName, socket)
	if err != nil {
		klog.ErrorS(err, "Error connecting to device plugin", "resourceName", r.ResourceName)
		return &pluginapi.Empty{}, err
	}
	m.mu.Lock()
	res := m.resources[r.ResourceName]
	if res == nil {
		res = &resource{devices: map[string]bool{}}
		m.resources[r.ResourceName] = res
	}
	old := res.plugin
	res.plugin = plugin
	m.mu.Unlock()
	if old != nil {
		klog.InfoS("Replacing the previous connection of the resource", "resourceName", r.ResourceName, "endpoint", old.socket)
		old.close()
	}
	klog.InfoS("Device plugin connected", "resourceName", r.ResourceName, "endpoint", plugin.socket,
		"getPreferredAllocationAvailable", plugin.options.GetPreferredAllocationAvailable,
		"preStartRequired", plugin.options.PreStartRequired)
	go m.follow(plugin)
	return &pluginapi.Empty{}, nil
}

// maxSocketPath is the longest path a unix socket can be bound or dialled at on Linux (sun_path less its NUL).
const maxSocketPath = 107

func checkSocketPath(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("the socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter node root",
			path, len(path), maxSocketPath)
	}
	return nil
}

func validate(r *pluginapi.RegisterRequest) error {
	supported := false
	for _, v := range pluginapi.SupportedVersions {
		supported = supported || r.Version == v
	}
	if !supported {
		return fmt.Errorf("requested device plugin version %s is not supported (supported: %v)", r.Version, pluginapi.SupportedVersions)
	}
	if !isExtendedResourceName(r.ResourceName) {
		return fmt.Errorf("invalid resource name %q: not an extended resource name", r.ResourceName)
	}
	if r.Endpoint == "" || r.Endpoint != filepath.Base(r.Endpoint) || r.Endpoint == "." || r.Endpoint == ".." {
		return fmt.Errorf("invalid endpoint %q: must be a socket file name in the device-plugin directory", r.Endpoint)
	}
	return nil
}

// isExtendedResourceName is the kubelet's check (v1helper.IsExtendedResourceName): a domain-qualified name outside
// kubernetes.io, not starting with "requests.", valid as a quota name.
func isExtendedResourceName(name string) bool {
	if !strings.Contains(name, "/") || strings.Contains(name, "kubernetes.io/") || strings.HasPrefix(name, "requests.") {
		return false
	}
	return len(validation.IsQualifiedName("requests."+name)) == 0
}

// follow reads the plugin's ListAndWatch stream until it ends, then marks the resource's devices unhealthy unless
// a newer registration replaced this plugin meanwhile.
func (m *Manager) follow(p *Plugin) {
	err := p.listAndWatch(func(devices []*pluginapi.Device) { m.update(p, devices) })
	m.mu.Lock()
	res := m.resources[p.resource]
	current := res != nil && res.plugin == p && !m.closing
	if current {
		res.plugin = nil
		for id := range res.devices {
			res.devices[id] = false
		}
	}
	m.mu.Unlock()
	p.close()
	if !current {
		klog.V(2).InfoS("ListAndWatch of a replaced or closed plugin connection ended", "resourceName", p.resource, "err", err)
		return
	}
	klog.InfoS("ListAndWatch ended; the resource's devices are unhealthy until its plugin registers again",
		"resourceName", p.resource, "endpoint", p.socket, "err", err)
	m.onChange()
}

func (m *Manager) update(p *Plugin, devices []*pluginapi.Device) {
	healthy := 0
	m.mu.Lock()
	res := m.resources[p.resource]
	if res == nil || res.plugin != p {
		m.mu.Unlock()
		return
	}
	res.devices = make(map[string]bool, len(devices))
	for _, d := range devices {
		res.devices[d.ID] = d.Health == pluginapi.Healthy
		if d.Health == pluginapi.Healthy {
			healthy++
		}
	}
	m.mu.Unlock()
	klog.InfoS("State pushed by device plugin", "resourceName", p.resource, "devices", len(devices), "healthy", healthy)
	m.onChange()
}

func (m *Manager) closeAll() {
	m.mu.Lock()
	m.closing = true
	var plugins []*Plugin
	for _, res := range m.resources {
		if res.plugin != nil {
			plugins = append(plugins, res.plugin)
		}
	}
	m.mu.Unlock()
	for _, p := range plugins {
		p.close()
	}
}

// Counts is every registered resource's capacity (all devices) and allocatable (healthy devices).
func (m *Manager) Counts() map[string]Count {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Count, len(m.resources))
	for name, res := range m.resources {
		c := Count{Capacity: int64(len(res.devices))}
		for _, healthy := range res.devices {
			if healthy {
				c.Allocatable++
			}
		}
		out[name] = c
	}
	return out
}

// Registered says whether a plugin ever registered the resource (it stays registered while disconnected).
func (m *Manager) Registered(resource string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.resources[resource]
	return ok
}

// Healthy is the resource's healthy device IDs, sorted.
func (m *Manager) Healthy(resource string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	if res := m.resources[resource]; res != nil {
		for id, healthy := range res.devices {
			if healthy {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// Plugin is the resource's connected plugin, nil while none is.
func (m *Manager) Plugin(resource string) *Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	if res := m.resources[resource]; res != nil {
		return res.plugin
	}
	return nil
}
