// Command fake-device-plugin is a device plugin for the sandbox's tests only: it serves COUNT healthy devices of
// RESOURCE on DIR/ENDPOINT, registers with DIR/kubelet.sock, prints "registered" and runs until SIGTERM/SIGINT.
// Allocate of more than --fail-over IDs fails with HAMi's "device number not matched".
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"hami-e2e/sandbox/kubelet/internal/fakeplugin"
)

func main() {
	dir := flag.String("dir", "", "the node's device-plugin directory (required)")
	resource := flag.String("resource", "example.com/fake", "resource name")
	endpoint := flag.String("endpoint", "fake.sock", "socket file name in --dir")
	count := flag.Int("count", 4, "number of healthy devices, IDs fake-0 .. fake-<count-1>")
	failOver := flag.Int("fail-over", 0, "if > 0, an Allocate of more IDs than this fails")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "--dir is required")
		os.Exit(2)
	}
	ids := make([]string, *count)
	for i := range ids {
		ids[i] = fmt.Sprintf("fake-%d", i)
	}
	p := fakeplugin.New(filepath.Join(*dir, *endpoint), *resource, ids...)
	if *failOver > 0 {
		p.SetAllocate(func(ids []string) (*pluginapi.ContainerAllocateResponse, error) {
			if len(ids) > *failOver {
				return nil, errors.New("device number not matched")
			}
			return fakeplugin.DefaultAllocate(ids)
		})
	}
	if err := p.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := p.Register(filepath.Join(*dir, "kubelet.sock")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("registered")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	p.Stop()
}
