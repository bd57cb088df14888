package nodestatus

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"hami-e2e/sandbox/kubelet/internal/devicemanager"
)

func TestCountsAreRestoredWhenSomethingElseRewritesThem(t *testing.T) {
	client := fake.NewClientset(&v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n"},
		Status:     v1.NodeStatus{Capacity: v1.ResourceList{"cpu": resource.MustParse("4")}},
	})
	s := New(client, "n", func() map[string]devicemanager.Count {
		return map[string]devicemanager.Count{"example.com/fake": {Capacity: 4, Allocatable: 3}}
	})
	s.period = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	s.Kick()
	wait := func(what string, cond func(*v1.Node) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			node, err := client.CoreV1().Nodes().Get(ctx, "n", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cond(node) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status %+v", what, node.Status)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	right := func(n *v1.Node) bool {
		c, a := n.Status.Capacity["example.com/fake"], n.Status.Allocatable["example.com/fake"]
		return c.Value() == 4 && a.Value() == 3 && n.Status.Capacity.Cpu().Value() == 4
	}
	wait("the plugin's counts, cpu kept", right)
	node, _ := client.CoreV1().Nodes().Get(ctx, "n", metav1.GetOptions{})
	node.Status.Capacity["example.com/fake"] = resource.MustParse("40")
	node.Status.Allocatable["example.com/fake"] = resource.MustParse("40")
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("the counts restored by the periodic check", right)
}
