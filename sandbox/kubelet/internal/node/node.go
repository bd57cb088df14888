// Package node wires the device-plugin manager of one node: the Registration server, the node status syncer and
// pod admission.
package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"hami-e2e/sandbox/kubelet/internal/admission"
	"hami-e2e/sandbox/kubelet/internal/devicemanager"
	"hami-e2e/sandbox/kubelet/internal/nodestatus"
	"hami-e2e/sandbox/kubelet/internal/state"
)

// PluginDir is the kubelet's device-plugin directory, relative to the node's root folder.
const PluginDir = "var/lib/kubelet/device-plugins"

// Config names the node and its folders (absolute paths).
type Config struct {
	Node     string
	Root     string
	StateDir string
}

// Run serves the node's device plugins and admits its pods until ctx ends or a part fails.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("create the state directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var syncer *nodestatus.Syncer
	var admitter *admission.Admitter
	devices := devicemanager.New(filepath.Join(cfg.Root, PluginDir), func() {
		syncer.Kick()
		admitter.Resync()
	})
	syncer = nodestatus.New(client, cfg.Node, devices.Counts)
	admitter = admission.New(client, cfg.Node, devices, state.Dir(cfg.StateDir))
	klog.InfoS("Starting the device-plugin manager", "node", cfg.Node, "root", cfg.Root, "stateDir", cfg.StateDir)

	go syncer.Run(ctx)
	ended := make(chan error, 2)
	go func() { ended <- admitter.Run(ctx) }()
	go func() { ended <- devices.Serve(ctx) }()
	err := <-ended
	cancel()
	if other := <-ended; err == nil {
		err = other
	}
	return err
}
