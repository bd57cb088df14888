// Package fakeplugin is a small device plugin for tests only: it serves the DevicePlugin service on a unix socket,
// registers with a kubelet socket, reports a settable device list and records every Allocate.
package fakeplugin

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// AllocateFunc answers one container request.
type AllocateFunc func(ids []string) (*pluginapi.ContainerAllocateResponse, error)

// Plugin is a fake device plugin for one resource.
type Plugin struct {
	pluginapi.UnimplementedDevicePluginServer

	Resource string
	Socket   string
	// Preferred is what GetDevicePluginOptions says of GetPreferredAllocation.
	Preferred bool

	mu          sync.Mutex
	devices     map[string]bool
	changed     chan struct{}
	allocate    AllocateFunc
	preference  func(*pluginapi.ContainerPreferredAllocationRequest) []string
	allocations [][]string
	preferCalls []*pluginapi.ContainerPreferredAllocationRequest
	server      *grpc.Server
}

// New returns a plugin for resource serving on socket, with healthy devices ids.
func New(socket, resource string, ids ...string) *Plugin {
	p := &Plugin{Resource: resource, Socket: socket, devices: map[string]bool{}, changed: make(chan struct{})}
	for _, id := range ids {
		p.devices[id] = true
	}
	p.allocate = DefaultAllocate
	return p
}

// DefaultAllocate answers with an env naming the IDs, one mount and one device node per ID, and an annotation.
func DefaultAllocate(ids []string) (*pluginapi.ContainerAllocateResponse, error) {
	resp := &pluginapi.ContainerAllocateResponse{
		Envs:        map[string]string{"FAKE_DEVICES": strings.Join(ids, ",")},
		Annotations: map[string]string{"fake.example.com/devices": strings.Join(ids, ",")},
	}
	for _, id := range ids {
		resp.Mounts = append(resp.Mounts, &pluginapi.Mount{ContainerPath: "/fake/" + id, HostPath: "/tmp/fake/" + id, ReadOnly: true})
		resp.Devices = append(resp.Devices, &pluginapi.DeviceSpec{ContainerPath: "/dev/fake-" + id, HostPath: "/dev/null", Permissions: "rw"})
	}
	return resp, nil
}

// Start serves the DevicePlugin service on the plugin's socket (replacing a stale one).
func (p *Plugin) Start() error {
	if err := os.MkdirAll(filepath.Dir(p.Socket), 0o750); err != nil {
		return err
	}
	if err := os.Remove(p.Socket); err != nil && !os.IsNotExist(err) {
		return err
	}
	listener, err := net.Listen("unix", p.Socket)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	server := p.server
	p.mu.Unlock()
	go server.Serve(listener)
	return nil
}

// Stop ends the server and every ListAndWatch stream, as a plugin that dies.
func (p *Plugin) Stop() {
	p.mu.Lock()
	server := p.server
	p.server = nil
	p.mu.Unlock()
	if server != nil {
		server.Stop()
	}
}

// Register announces the plugin on the kubelet's Registration socket.
func (p *Plugin) Register(kubeletSocket string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.Socket),
		ResourceName: p.Resource,
		Options:      &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: p.Preferred},
	}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("register %s: %w", p.Resource, err)
	}
	return nil
}

// SetDevices replaces the device list (id -> healthy) and pushes it to every ListAndWatch stream.
func (p *Plugin) SetDevices(devices map[string]bool) {
	p.mu.Lock()
	p.devices = map[string]bool{}
	for id, healthy := range devices {
		p.devices[id] = healthy
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// SetAllocate replaces the Allocate answer.
func (p *Plugin) SetAllocate(fn AllocateFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.allocate = fn
}

// SetPreference makes GetPreferredAllocation answer with fn's IDs.
func (p *Plugin) SetPreference(fn func(*pluginapi.ContainerPreferredAllocationRequest) []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.preference = fn
}

// Allocations is the device IDs of every Allocate container request so far, in call order.
func (p *Plugin) Allocations() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.allocations...)
}

// PreferredCalls is every GetPreferredAllocation container request so far.
func (p *Plugin) PreferredCalls() []*pluginapi.ContainerPreferredAllocationRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*pluginapi.ContainerPreferredAllocationRequest(nil), p.preferCalls...)
}

// GetDevicePluginOptions implements the DevicePlugin service.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: p.Preferred}, nil
}

// ListAndWatch implements the DevicePlugin service: the list now, then after every SetDevices.
func (p *Plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	for {
		p.mu.Lock()
		ids := make([]string, 0, len(p.devices))
		for id := range p.devices {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		resp := &pluginapi.ListAndWatchResponse{}
		for _, id := range ids {
			health := pluginapi.Unhealthy
			if p.devices[id] {
				health = pluginapi.Healthy
			}
			resp.Devices = append(resp.Devices, &pluginapi.Device{ID: id, Health: health})
		}
		changed := p.changed
		p.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// GetPreferredAllocation implements the DevicePlugin service.
func (p *Plugin) GetPreferredAllocation(_ context.Context, r *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, req := range r.ContainerRequests {
		p.preferCalls = append(p.preferCalls, req)
		if p.preference != nil {
			resp.ContainerResponses = append(resp.ContainerResponses,
				&pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: p.preference(req)})
		}
	}
	return resp, nil
}

// Allocate implements the DevicePlugin service.
func (p *Plugin) Allocate(_ context.Context, r *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	p.mu.Lock()
	fn := p.allocate
	for _, req := range r.ContainerRequests {
		p.allocations = append(p.allocations, append([]string(nil), req.DevicesIds...))
	}
	p.mu.Unlock()
	resp := &pluginapi.AllocateResponse{}
	for _, req := range r.ContainerRequests {
		cr, err := fn(req.DevicesIds)
		if err != nil {
			return nil, err
		}
		resp.ContainerResponses = append(resp.ContainerResponses, cr)
	}
	return resp, nil
}
