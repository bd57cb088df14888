// Package admission admits the pods bound to one node the way the kubelet's device manager does: for each pod that
// asks for a registered device-plugin resource, init containers first and then containers, it chooses device IDs
// (GetPreferredAllocation when the plugin offers it), calls Allocate once per container and keeps the response in
// the state directory. A pod whose allocation fails is rejected as the kubelet rejects it (phase Failed, reason
// UnexpectedAdmissionError). One worker handles one pod at a time, so Allocate calls on a node are serialised, in
// container order within a pod — HAMi's plugin relies on that (it finds the pod by its node lock).
package admission

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"hami-e2e/sandbox/kubelet/internal/devicemanager"
	"hami-e2e/sandbox/kubelet/internal/state"
)

// allocateTimeout bounds one GetPreferredAllocation or Allocate call (the kubelet has none; a hung plugin must not
// stop the node's admission forever).
const allocateTimeout = 2 * time.Minute

// podRecord is what this node knows of one pod's devices.
type podRecord struct {
	key string
	// containers holds each admitted container's device IDs by resource; a container appears once its state file
	// is written.
	containers map[string]map[string][]string
	// done: admission finished (admitted or rejected); the pod is not admitted again.
	done bool
	// released: its devices were given back (pod finished).
	released bool
	// rejection is the admission error message while the pod's Failed status is not yet written.
	rejection    string
	eventCreated bool
}

// Admitter watches the node's pods and admits them.
type Admitter struct {
	client   kubernetes.Interface
	node     string
	devices  *devicemanager.Manager
	state    state.Dir
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]

	// Owned by the single worker (and by restore, before the worker starts).
	inUse    map[string]map[string]types.UID // resource -> device ID -> pod UID
	pods     map[types.UID]*podRecord
	uidByKey map[string]types.UID
}

// New returns an Admitter for the pods whose spec.nodeName is node.
func New(client kubernetes.Interface, node string, devices *devicemanager.Manager, dir state.Dir) *Admitter {
	selector := fields.OneTermEqualSelector("spec.nodeName", node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, options metav1.ListOptions) (runtime.Object, error) {
			options.FieldSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, options)
		},
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			options.FieldSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, options)
		},
	}
	a := &Admitter{
		client:  client,
		node:    node,
		devices: devices,
		state:   dir,
		informer: cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &v1.Pod{}, 0,
			cache.Indexers{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "admission"}),
		inUse:    map[string]map[string]types.UID{},
		pods:     map[types.UID]*podRecord{},
		uidByKey: map[string]types.UID{},
	}
	enqueue := func(obj any) {
		if pod, ok := obj.(*v1.Pod); ok && pod.Spec.NodeName != node {
			return
		}
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	_, _ = a.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	return a
}

// Run watches pods, restores the devices in use from the state directory, then admits pods one at a time until
// ctx ends.
func (a *Admitter) Run(ctx context.Context) error {
	go a.informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), a.informer.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("the pod watch of node %s did not sync", a.node)
	}
	a.restore()
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	klog.InfoS("Watching pods for admission", "node", a.node)
	for a.processNext(ctx) {
	}
	return nil
}

func (a *Admitter) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.sync(ctx, key); err != nil {
		klog.ErrorS(err, "Pod sync failed; retrying", "pod", key)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

func (a *Admitter) sync(ctx context.Context, key string) error {
	obj, exists, err := a.informer.GetStore().GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		if uid, ok := a.uidByKey[key]; ok {
			a.forget(uid, "pod deleted")
		}
		return nil
	}
	pod := obj.(*v1.Pod)
	if uid, ok := a.uidByKey[key]; ok && uid != pod.UID {
		a.forget(uid, "pod replaced by a new one of the same name")
	}
	rec := a.pods[pod.UID]
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		if rec != nil && !rec.released {
			rec.done, rec.released, rec.rejection = true, true, ""
			a.release(pod.UID, fmt.Sprintf("pod %s", pod.Status.Phase))
		}
		return nil
	}
	if rec != nil && rec.rejection != "" {
		return a.reject(ctx, pod, rec)
	}
	if (rec != nil && rec.done) || pod.DeletionTimestamp != nil || pod.Status.Phase != v1.PodPending {
		return nil
	}
	if !a.needsDevices(pod) {
		return nil
	}
	return a.admit(ctx, pod)
}

// needsDevices says whether a container of the pod asks for a resource some plugin registered on this node; a pod
// asking only for other resources is left alone.
func (a *Admitter) needsDevices(pod *v1.Pod) bool {
	for _, c := range allContainers(pod) {
		if len(a.pluginResources(&c)) > 0 {
			return true
		}
	}
	return false
}

func (a *Admitter) record(pod *v1.Pod) *podRecord {
	rec := a.pods[pod.UID]
	if rec == nil {
		rec = &podRecord{key: pod.Namespace + "/" + pod.Name, containers: map[string]map[string][]string{}}
		a.pods[pod.UID] = rec
		a.uidByKey[rec.key] = pod.UID
	}
	return rec
}

// forget releases a pod that is gone and removes its state files.
func (a *Admitter) forget(uid types.UID, why string) {
	if rec, ok := a.pods[uid]; ok {
		if !rec.released {
			a.release(uid, why)
		}
		delete(a.uidByKey, rec.key)
		delete(a.pods, uid)
	}
	if err := a.state.RemovePod(uid); err != nil {
		klog.ErrorS(err, "Could not remove the pod's state files", "podUID", uid)
	}
}

// release gives back every device ID the pod holds.
func (a *Admitter) release(uid types.UID, why string) {
	freed := map[string][]string{}
	for resource, ids := range a.inUse {
		for id, owner := range ids {
			if owner == uid {
				delete(ids, id)
				freed[resource] = append(freed[resource], id)
			}
		}
	}
	if len(freed) == 0 {
		return
	}
	key := ""
	if rec := a.pods[uid]; rec != nil {
		key = rec.key
	}
	klog.InfoS("Released devices", "pod", key, "podUID", uid, "reason", why, "deviceIDs", freed)
}

// restore rebuilds the devices in use from the state directory after a restart: records of pods that no longer
// exist are removed, finished pods hold nothing, a pod that is no longer Pending counts as admitted, and a pending
// pod resumes its admission after its last recorded container.
func (a *Admitter) restore() {
	loaded, errs := a.state.Load()
	for _, err := range errs {
		klog.ErrorS(err, "Skipping an unreadable state file")
	}
	if len(loaded) == 0 {
		return
	}
	byUID := map[types.UID]*v1.Pod{}
	for _, obj := range a.informer.GetStore().List() {
		pod := obj.(*v1.Pod)
		byUID[pod.UID] = pod
	}
	for uid, containers := range loaded {
		pod, ok := byUID[uid]
		if !ok {
			klog.InfoS("Removing the state of a pod that no longer exists", "podUID", uid)
			if err := a.state.RemovePod(uid); err != nil {
				klog.ErrorS(err, "Could not remove the pod's state files", "podUID", uid)
			}
			continue
		}
		rec := a.record(pod)
		for _, c := range containers {
			rec.containers[c.Container] = c.Resources
		}
		if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			rec.done, rec.released = true, true
			continue
		}
		rec.done = pod.Status.Phase != v1.PodPending
		for _, c := range containers {
			for resource, ids := range c.Resources {
				a.markInUse(resource, ids, uid)
			}
		}
		klog.InfoS("Restored devices in use", "pod", klog.KObj(pod), "podUID", uid, "containers", len(containers),
			"admitted", rec.done)
	}
}

func (a *Admitter) markInUse(resource string, ids []string, uid types.UID) {
	if a.inUse[resource] == nil {
		a.inUse[resource] = map[string]types.UID{}
	}
	for _, id := range ids {
		if owner, taken := a.inUse[resource][id]; taken && owner != uid {
			klog.InfoS("Device ID recorded for two pods; keeping the first", "resourceName", resource, "deviceID", id,
				"podUID", owner, "otherPodUID", uid)
			continue
		}
		a.inUse[resource][id] = uid
	}
}
