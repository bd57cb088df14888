package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"hami-e2e/sandbox/kubelet/internal/fakeplugin"
	"hami-e2e/sandbox/kubelet/internal/state"
)

const (
	nodeName = "node-a"
	res      = "example.com/fake"
)

// harness runs the manager of node-a against a fake clientset, with a root folder and state directory in a
// temporary folder.
type harness struct {
	t       *testing.T
	client  *fake.Clientset
	root    string
	stateDr string
	stop    context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	// Short paths: a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "kl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	client := fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}})
	h := &harness{t: t, client: client, root: filepath.Join(dir, "root"), stateDr: filepath.Join(dir, "state")}
	h.start()
	t.Cleanup(h.shutdown)
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- Run(ctx, h.client, Config{Node: nodeName, Root: h.root, StateDir: h.stateDr}) }()
	h.eventually("the Registration socket exists", func() bool {
		_, err := os.Stat(h.kubeletSocket())
		return err == nil
	})
}

func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return after its context ended")
	}
	h.stop = nil
}

func (h *harness) kubeletSocket() string { return filepath.Join(h.root, PluginDir, "kubelet.sock") }

// plugin starts and registers a fake plugin with devices fake-0 .. fake-<n-1>.
func (h *harness) plugin(n int, preferred bool) *fakeplugin.Plugin {
	h.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("fake-%d", i)
	}
	p := fakeplugin.New(filepath.Join(h.root, PluginDir, "fake.sock"), res, ids...)
	p.Preferred = preferred
	if err := p.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Stop)
	if err := p.Register(h.kubeletSocket()); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) nodeCounts() (string, string) {
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	c, a := n.Status.Capacity[res], n.Status.Allocatable[res]
	return c.String(), a.String()
}

func (h *harness) waitCounts(capacity, allocatable string) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("capacity %s, allocatable %s", capacity, allocatable), func() bool {
		c, a := h.nodeCounts()
		return c == capacity && a == allocatable
	})
}

type ctr struct {
	name  string
	count int
	init  bool
}

func (h *harness) createPod(name string, resourceName string, containers ...ctr) *v1.Pod {
	h.t.Helper()
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Annotations: map[string]string{"hami.io/bind-phase": "allocating"}},
		Spec:   v1.PodSpec{NodeName: nodeName},
		Status: v1.PodStatus{Phase: v1.PodPending},
	}
	for _, c := range containers {
		container := v1.Container{Name: c.name, Image: "busybox"}
		if c.count > 0 {
			q := *resource.NewQuantity(int64(c.count), resource.DecimalSI)
			container.Resources.Limits = v1.ResourceList{v1.ResourceName(resourceName): q}
			container.Resources.Requests = v1.ResourceList{v1.ResourceName(resourceName): q}
		}
		if c.init {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, container)
		} else {
			pod.Spec.Containers = append(pod.Spec.Containers, container)
		}
	}
	created, err := h.client.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return created
}

func (h *harness) pod(name string) *v1.Pod {
	p, err := h.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) setPhase(name string, phase v1.PodPhase) {
	p := h.pod(name)
	p.Status.Phase = phase
	if _, err := h.client.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) readState(uid types.UID, container string) *state.Container {
	h.t.Helper()
	data, err := os.ReadFile(state.Dir(h.stateDr).Path(uid, container))
	if err != nil {
		h.t.Fatalf("state file of %s/%s: %v", uid, container, err)
	}
	var c state.Container
	if err := json.Unmarshal(data, &c); err != nil {
		h.t.Fatal(err)
	}
	return &c
}

func (h *harness) stateExists(uid types.UID, container string) bool {
	_, err := os.Stat(state.Dir(h.stateDr).Path(uid, container))
	return err == nil
}

func (h *harness) waitFailed(name string) *v1.Pod {
	h.t.Helper()
	var pod *v1.Pod
	h.eventually(name+" is Failed", func() bool {
		pod = h.pod(name)
		return pod.Status.Phase == v1.PodFailed
	})
	return pod
}

func sortedCopy(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

func TestRegistrationSetsCapacityAndAllocatable(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(4, false)
	h.waitCounts("4", "4")
	p.SetDevices(map[string]bool{"fake-0": true, "fake-1": false, "fake-2": true, "fake-3": true, "fake-4": false})
	h.waitCounts("5", "3")
}

func TestPluginStreamEndKeepsCapacityAndZeroesAllocatable(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(4, false)
	h.waitCounts("4", "4")
	p.Stop()
	h.waitCounts("4", "0")
	// The plugin comes back (as HAMi's does when it restarts) and registers again.
	h.plugin(6, false)
	h.waitCounts("6", "6")
}

func TestNewKubeletSocketAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.plugin(2, false)
	h.waitCounts("2", "2")
	h.shutdown()
	if _, err := os.Stat(h.kubeletSocket()); !os.IsNotExist(err) {
		t.Fatalf("kubelet.sock left behind after stop: %v", err)
	}
	// A stale socket file is replaced at start.
	if err := os.WriteFile(h.kubeletSocket(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.plugin(3, false)
	h.waitCounts("3", "3")
}

func TestAdmitsContainersInOrderAndKeepsResponses(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(4, true)
	// The plugin prefers the highest IDs: the chosen IDs must be its choice, not the first available ones.
	p.SetPreference(func(r *pluginapi.ContainerPreferredAllocationRequest) []string {
		ids := sortedCopy(r.AvailableDeviceIDs)
		return ids[len(ids)-int(r.AllocationSize):]
	})
	h.waitCounts("4", "4")
	pod := h.createPod("two", res, ctr{name: "first", count: 1}, ctr{name: "plain"}, ctr{name: "second", count: 2})
	h.eventually("both containers have state files", func() bool {
		return h.stateExists(pod.UID, "first") && h.stateExists(pod.UID, "second")
	})
	want := [][]string{{"fake-3"}, {"fake-1", "fake-2"}}
	got := p.Allocations()
	for i := range got {
		got[i] = sortedCopy(got[i])
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Allocate calls %v, want %v (container order, preferred IDs)", got, want)
	}
	if calls := p.PreferredCalls(); len(calls) != 2 || calls[0].AllocationSize != 1 || len(calls[1].AvailableDeviceIDs) != 3 {
		t.Fatalf("GetPreferredAllocation calls %v: want sizes 1 then 2, the second among the 3 IDs left", calls)
	}
	if h.stateExists(pod.UID, "plain") {
		t.Fatal("a container without devices got a state file")
	}
	second := h.readState(pod.UID, "second")
	wantState := &state.Container{
		Namespace: "default", Pod: "two", UID: pod.UID, Container: "second", Resource: res,
		DeviceIDs: got[1], Resources: map[string][]string{res: got[1]},
	}
	if second.Namespace != wantState.Namespace || second.Pod != wantState.Pod || second.UID != wantState.UID ||
		second.Container != wantState.Container || second.Resource != wantState.Resource ||
		!reflect.DeepEqual(sortedCopy(second.DeviceIDs), got[1]) ||
		!reflect.DeepEqual(sortedCopy(second.Resources[res]), got[1]) {
		t.Fatalf("state of container second: %+v, want %+v", second, wantState)
	}
	if second.Envs["FAKE_DEVICES"] != fmt.Sprint(second.DeviceIDs[0], ",", second.DeviceIDs[1]) ||
		len(second.Mounts) != 2 || len(second.Devices) != 2 || second.Annotations["fake.example.com/devices"] == "" {
		t.Fatalf("state of container second lacks the Allocate response: %+v", second)
	}
	if phase := h.pod("two").Status.Phase; phase != v1.PodPending {
		t.Fatalf("an admitted pod's phase changed to %s", phase)
	}
}

func TestInitContainerDevicesAreReused(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(2, false)
	h.waitCounts("2", "2")
	pod := h.createPod("init", res, ctr{name: "setup", count: 2, init: true}, ctr{name: "main", count: 2})
	h.eventually("main has a state file", func() bool { return h.stateExists(pod.UID, "main") })
	if got := p.Allocations(); len(got) != 2 || !reflect.DeepEqual(sortedCopy(got[0]), sortedCopy(got[1])) {
		t.Fatalf("Allocate calls %v: the container must reuse its init container's two devices", got)
	}
}

func TestAllocateErrorFailsThePod(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(4, false)
	p.SetAllocate(func([]string) (*pluginapi.ContainerAllocateResponse, error) {
		return nil, errors.New("device number not matched")
	})
	h.waitCounts("4", "4")
	pod := h.createPod("bad", res, ctr{name: "first", count: 1}, ctr{name: "second", count: 1})
	failed := h.waitFailed("bad")
	wantMsg := "Pod was rejected: Allocate failed due to rpc error: code = Unknown desc = device number not matched, which is unexpected"
	if failed.Status.Reason != "UnexpectedAdmissionError" || failed.Status.Message != wantMsg {
		t.Fatalf("status reason %q message %q, want UnexpectedAdmissionError and %q", failed.Status.Reason, failed.Status.Message, wantMsg)
	}
	if n := len(p.Allocations()); n != 1 {
		t.Fatalf("%d Allocate calls, want 1: the second container must not be allocated after the first failed", n)
	}
	events, err := h.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 1 || events.Items[0].Reason != "UnexpectedAdmissionError" ||
		events.Items[0].InvolvedObject.UID != pod.UID || events.Items[0].Type != v1.EventTypeWarning {
		t.Fatalf("events %+v: want one Warning UnexpectedAdmissionError event of the pod", events.Items)
	}
	if _, err := os.Stat(filepath.Join(h.stateDr, string(pod.UID))); !os.IsNotExist(err) {
		t.Fatal("a rejected pod kept its state files")
	}
	// Its device was given back: a pod asking for all four is admitted.
	p.SetAllocate(fakeplugin.DefaultAllocate)
	all := h.createPod("all", res, ctr{name: "c", count: 4})
	h.eventually("the pod asking for every device is admitted", func() bool { return h.stateExists(all.UID, "c") })
}

func TestInsufficientDevicesFailThePod(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(2, false)
	h.waitCounts("2", "2")
	h.createPod("greedy", res, ctr{name: "c", count: 3})
	failed := h.waitFailed("greedy")
	wantMsg := "Pod was rejected: Allocate failed due to requested number of devices unavailable for example.com/fake. Requested: 3, Available: 2, which is unexpected"
	if failed.Status.Reason != "UnexpectedAdmissionError" || failed.Status.Message != wantMsg {
		t.Fatalf("status %q %q, want UnexpectedAdmissionError %q", failed.Status.Reason, failed.Status.Message, wantMsg)
	}
	if n := len(p.Allocations()); n != 0 {
		t.Fatalf("%d Allocate calls for a pod that cannot fit", n)
	}
}

func TestPodWithoutRegisteredResourceIsLeftAlone(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(2, false)
	h.waitCounts("2", "2")
	other := h.createPod("other", "other.example.com/thing", ctr{name: "c", count: 1})
	// One worker handles pods in order: once the later pod is admitted, the first one has been looked at.
	later := h.createPod("later", res, ctr{name: "c", count: 1})
	h.eventually("the later pod is admitted", func() bool { return h.stateExists(later.UID, "c") })
	if got := h.pod("other"); got.Status.Phase != v1.PodPending || got.Status.Reason != "" {
		t.Fatalf("a pod without a registered resource was touched: %+v", got.Status)
	}
	if h.stateExists(other.UID, "c") || len(p.Allocations()) != 1 {
		t.Fatalf("a pod without a registered resource was allocated: %v", p.Allocations())
	}
}

func TestRestartKeepsDevicesInUse(t *testing.T) {
	h := newHarness(t)
	p := h.plugin(4, false)
	h.waitCounts("4", "4")
	first := h.createPod("first", res, ctr{name: "c", count: 2})
	h.eventually("first is admitted", func() bool { return h.stateExists(first.UID, "c") })
	h.setPhase("first", v1.PodRunning)
	held := sortedCopy(h.readState(first.UID, "c").DeviceIDs)
	gone := h.createPod("gone", res, ctr{name: "c", count: 1})
	h.eventually("gone is admitted", func() bool { return h.stateExists(gone.UID, "c") })

	h.shutdown()
	p.Stop()
	// While the manager is down, one pod is deleted: its state must be dropped, its device free.
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.start()
	p = h.plugin(4, false)
	second := h.createPod("second", res, ctr{name: "c", count: 2})
	h.eventually("second is admitted", func() bool { return h.stateExists(second.UID, "c") })
	if _, err := os.Stat(filepath.Join(h.stateDr, string(gone.UID))); !os.IsNotExist(err) {
		t.Fatal("the state of a pod deleted during the restart was kept")
	}
	got := sortedCopy(h.readState(second.UID, "c").DeviceIDs)
	for _, id := range got {
		for _, busy := range held {
			if id == busy {
				t.Fatalf("second got %v, but %v are still held by the running pod first", got, held)
			}
		}
	}
	if calls := p.Allocations(); len(calls) != 1 {
		t.Fatalf("Allocate calls after restart %v: the running pod must not be admitted again", calls)
	}
	// Nothing is left: a further pod fails; once first is deleted its devices are free again.
	h.createPod("third", res, ctr{name: "c", count: 1})
	h.waitFailed("third")
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fourth := h.createPod("fourth", res, ctr{name: "c", count: 2})
	h.eventually("fourth gets first's devices", func() bool { return h.stateExists(fourth.UID, "c") })
	if _, err := os.Stat(filepath.Join(h.stateDr, string(first.UID))); !os.IsNotExist(err) {
		t.Fatal("the state of a deleted pod was kept")
	}
}

func TestFinishedPodReleasesDevices(t *testing.T) {
	h := newHarness(t)
	h.plugin(1, false)
	h.waitCounts("1", "1")
	job := h.createPod("job", res, ctr{name: "c", count: 1})
	h.eventually("job is admitted", func() bool { return h.stateExists(job.UID, "c") })
	h.setPhase("job", v1.PodSucceeded)
	next := h.createPod("next", res, ctr{name: "c", count: 1})
	h.eventually("next gets the device of the finished job", func() bool { return h.stateExists(next.UID, "c") })
	if !h.stateExists(job.UID, "c") {
		t.Fatal("a finished pod's state was removed before the pod was deleted")
	}
}
