// Command hami-e2e-kubelet is the kubelet's device-plugin manager for one simulated node of the hami-e2e sandbox:
// it serves the device-plugin Registration socket under the node's root folder, turns the plugins' ListAndWatch
// into the Node's capacity and allocatable, and admits the node's pods by calling the plugins' Allocate, keeping
// each response in the state directory. Everything else a kubelet does is kwok's or the node agent's.
//
//	hami-e2e-kubelet --node NAME --kubeconfig PATH --root NODE_ROOT --state-dir DIR [-v=N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"hami-e2e/sandbox/kubelet/internal/node"
)

type options struct {
	node, kubeconfig, root, stateDir string
}

func main() {
	klog.InitFlags(nil)
	var o options
	flag.StringVar(&o.node, "node", "", "name of the Node this process is the device-plugin manager of (required)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the API server, which must be on loopback (required)")
	flag.StringVar(&o.root, "root", "", "the node's root folder; the Registration socket is ROOT/"+node.PluginDir+"/kubelet.sock (required)")
	flag.StringVar(&o.stateDir, "state-dir", "", "where each admitted container's Allocate response is kept, as DIR/<pod-uid>/<container>.json (required)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: %s --node NAME --kubeconfig PATH --root NODE_ROOT --state-dir DIR [-v=N]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(o); err != nil {
		klog.ErrorS(err, "hami-e2e-kubelet stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(o options) error {
	if o.node == "" || o.kubeconfig == "" || o.root == "" || o.stateDir == "" || flag.NArg() > 0 {
		flag.Usage()
		return errors.New("--node, --kubeconfig, --root and --state-dir are required, and nothing else")
	}
	config, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig %s: %w", o.kubeconfig, err)
	}
	if err := requireLoopback(config.Host); err != nil {
		return err
	}
	config.UserAgent = "hami-e2e-kubelet/" + o.node
	config.QPS, config.Burst = 50, 100
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	stateDir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	klog.InfoS("Using the API server", "host", config.Host)
	if err := node.Run(ctx, client, node.Config{Node: o.node, Root: root, StateDir: stateDir}); err != nil {
		return err
	}
	klog.InfoS("Stopped", "node", o.node)
	return nil
}

// requireLoopback refuses an API server that is not on a loopback address: the sandbox never talks to anything
// else.
func requireLoopback(host string) error {
	u, err := url.Parse(host)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("the kubeconfig's server %q is not a URL", host)
	}
	if u.Hostname() == "localhost" {
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("the kubeconfig's server %s is not on loopback; this sandbox process only talks to 127.0.0.0/8", host)
}
