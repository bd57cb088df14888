package devicemanager

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Plugin is one connection to a registered device plugin's unix socket.
type Plugin struct {
	resource string
	socket   string
	conn     *grpc.ClientConn
	api      pluginapi.DevicePluginClient
	options  *pluginapi.DevicePluginOptions

	closeOnce sync.Once
}

// connect dials the plugin's socket and asks its options (GetDevicePluginOptions), within connectTimeout.
func connect(ctx context.Context, resourceName, socket string) (*Plugin, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("failed to dial device plugin %s: %w", socket, err)
	}
	p := &Plugin{resource: resourceName, socket: socket, conn: conn, api: pluginapi.NewDevicePluginClient(conn)}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	options, err := p.api.GetDevicePluginOptions(ctx, &pluginapi.Empty{}, grpc.WaitForReady(true))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to get device plugin options from %s: %w", socket, err)
	}
	p.options = options
	return p, nil
}

// Resource is the resource name the plugin registered.
func (p *Plugin) Resource() string { return p.resource }

// Options are the plugin's answer to GetDevicePluginOptions at registration (what the kubelet uses).
func (p *Plugin) Options() *pluginapi.DevicePluginOptions { return p.options }

// listAndWatch calls receive with every device list the plugin sends, until the stream ends.
func (p *Plugin) listAndWatch(receive func([]*pluginapi.Device)) error {
	stream, err := p.api.ListAndWatch(context.Background(), &pluginapi.Empty{})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		receive(resp.Devices)
	}
}

// GetPreferredAllocation asks the plugin which size devices it prefers among available, mustInclude included.
func (p *Plugin) GetPreferredAllocation(ctx context.Context, available, mustInclude []string, size int) ([]string, error) {
	resp, err := p.api.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{
		ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
			{AvailableDeviceIDs: available, MustIncludeDeviceIDs: mustInclude, AllocationSize: int32(size)},
		},
	})
	if err != nil {
		return nil, err
	}
	if len(resp.ContainerResponses) == 0 {
		return nil, nil
	}
	return resp.ContainerResponses[0].DeviceIDs, nil
}

// Allocate sends one AllocateRequest with a single ContainerRequest, as the kubelet does for each container.
func (p *Plugin) Allocate(ctx context.Context, ids []string) (*pluginapi.AllocateResponse, error) {
	return p.api.Allocate(ctx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}},
	})
}

func (p *Plugin) close() {
	p.closeOnce.Do(func() { p.conn.Close() })
}
