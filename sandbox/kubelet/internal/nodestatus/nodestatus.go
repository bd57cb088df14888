// Package nodestatus keeps the Node's capacity and allocatable of device-plugin resources equal to what the plugins
// report, as the kubelet's node status loop does: capacity = all devices, allocatable = healthy devices. Other
// resources of the node are left as they are.
package nodestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"hami-e2e/sandbox/kubelet/internal/devicemanager"
)

// Syncer patches the node's status when the counts change, and checks it again every period (something else may
// have rewritten it). A failed patch is retried after retryDelay.
type Syncer struct {
	client     kubernetes.Interface
	node       string
	counts     func() map[string]devicemanager.Count
	kick       chan struct{}
	period     time.Duration
	retryDelay time.Duration
	shown      map[string]devicemanager.Count // the counts last logged, by resource
}

// New returns a Syncer for node; counts gives the wanted figures per resource.
func New(client kubernetes.Interface, node string, counts func() map[string]devicemanager.Count) *Syncer {
	return &Syncer{
		client: client, node: node, counts: counts, kick: make(chan struct{}, 1),
		period: 10 * time.Second, retryDelay: time.Second, shown: map[string]devicemanager.Count{},
	}
}

// Kick asks for a sync soon; it never blocks.
func (s *Syncer) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run syncs on every Kick and every period until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	ticker := time.NewTicker(s.period)
	defer ticker.Stop()
	retry := time.NewTimer(0)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-ticker.C:
		case <-retry.C:
		}
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Could not update the node's device capacity; retrying", "node", s.node)
			retry.Reset(s.retryDelay)
		}
	}
}

type resourceLists struct {
	Capacity    map[string]string `json:"capacity"`
	Allocatable map[string]string `json:"allocatable"`
}

func (s *Syncer) sync(ctx context.Context) error {
	want := s.counts()
	if len(want) == 0 {
		return nil
	}
	node, err := s.client.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", s.node, err)
	}
	patch := resourceLists{Capacity: map[string]string{}, Allocatable: map[string]string{}}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := want[name]
		oldCap, oldAlloc := quantity(node.Status.Capacity, name), quantity(node.Status.Allocatable, name)
		if oldCap == fmt.Sprint(c.Capacity) && oldAlloc == fmt.Sprint(c.Allocatable) {
			if s.shown[name] != c {
				klog.InfoS("Node capacity already as the plugin reports", "node", s.node, "resourceName", name,
					"capacity", c.Capacity, "allocatable", c.Allocatable)
				s.shown[name] = c
			}
			continue
		}
		patch.Capacity[name] = fmt.Sprint(c.Capacity)
		patch.Allocatable[name] = fmt.Sprint(c.Allocatable)
		klog.InfoS("Node capacity changed", "node", s.node, "resourceName", name,
			"capacity", fmt.Sprintf("%s -> %d", oldCap, c.Capacity),
			"allocatable", fmt.Sprintf("%s -> %d", oldAlloc, c.Allocatable))
	}
	if len(patch.Capacity) == 0 {
		return nil
	}
	data, err := json.Marshal(map[string]resourceLists{"status": patch})
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().Nodes().Patch(ctx, s.node, types.MergePatchType, data, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patch node %s status: %w", s.node, err)
	}
	for name := range patch.Capacity {
		s.shown[name] = want[name]
	}
	return nil
}

func quantity(list v1.ResourceList, name string) string {
	q, ok := list[v1.ResourceName(name)]
	if !ok {
		return "none"
	}
	return fmt.Sprint(q.Value())
}
