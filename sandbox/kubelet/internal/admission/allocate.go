package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"hami-e2e/sandbox/kubelet/internal/state"
)

// ReasonUnexpected is the kubelet's reason for a pod whose device allocation failed at admission.
const ReasonUnexpected = "UnexpectedAdmissionError"

type request struct {
	resource string
	count    int
}

func allContainers(pod *v1.Pod) []v1.Container {
	return append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
}

func restartable(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// pluginResources is the container's requests of registered device-plugin resources, by name. Like the kubelet it
// reads limits: extended resources cannot be overcommitted, so their requests equal their limits.
func (a *Admitter) pluginResources(c *v1.Container) []request {
	var out []request
	for name, q := range c.Resources.Limits {
		if n := int(q.Value()); n > 0 && a.devices.Registered(string(name)) {
			out = append(out, request{resource: string(name), count: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].resource < out[j].resource })
	return out
}

// admit allocates devices for every container of the pod, init containers first. The devices of a finished
// (non-restartable) init container are offered again to the containers after it, as the kubelet reuses them.
func (a *Admitter) admit(ctx context.Context, pod *v1.Pod) error {
	rec := a.record(pod)
	start := time.Now()
	klog.InfoS("Admitting pod", "pod", klog.KObj(pod), "podUID", pod.UID)
	reuse := map[string]sets.Set[string]{}
	reusable := func(resource string) sets.Set[string] {
		if reuse[resource] == nil {
			reuse[resource] = sets.New[string]()
		}
		return reuse[resource]
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if err := a.admitContainer(ctx, pod, rec, c, reuse); err != nil {
			return a.fail(ctx, pod, rec, err)
		}
		for resource, ids := range rec.containers[c.Name] {
			if restartable(c) {
				reusable(resource).Delete(ids...)
			} else {
				reusable(resource).Insert(ids...)
			}
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if err := a.admitContainer(ctx, pod, rec, c, reuse); err != nil {
			return a.fail(ctx, pod, rec, err)
		}
		for resource, ids := range rec.containers[c.Name] {
			reusable(resource).Delete(ids...)
		}
	}
	rec.done = true
	klog.InfoS("Pod admitted", "pod", klog.KObj(pod), "podUID", pod.UID, "duration", time.Since(start))
	return nil
}

// admitContainer allocates the container's device-plugin resources and writes its state file. A container that
// already has one (admitted before a restart) is not allocated again.
func (a *Admitter) admitContainer(ctx context.Context, pod *v1.Pod, rec *podRecord, c *v1.Container,
	reuse map[string]sets.Set[string]) error {
	requests := a.pluginResources(c)
	if len(requests) == 0 {
		return nil
	}
	if done, ok := rec.containers[c.Name]; ok {
		for _, r := range requests {
			if got := len(done[r.resource]); got != r.count {
				return fmt.Errorf("pod %q container %q changed request for resource %q from %d to %d",
					pod.UID, c.Name, r.resource, got, r.count)
			}
		}
		return nil
	}
	out := state.NewContainer(pod.Namespace, pod.Name, pod.UID, c.Name)
	for _, r := range requests {
		ids, err := a.devicesToAllocate(ctx, pod, c.Name, r.resource, r.count, reuse[r.resource])
		if err != nil {
			return err
		}
		resp, err := a.allocate(ctx, pod, c.Name, r.resource, ids)
		if err != nil {
			return err
		}
		out.Add(r.resource, ids, resp)
	}
	if err := a.state.Write(out); err != nil {
		return fmt.Errorf("failed to write the allocation of container %s: %w", c.Name, err)
	}
	rec.containers[c.Name] = out.Resources
	return nil
}

// devicesToAllocate chooses required device IDs of resource for one container, with the kubelet's checks and
// messages: reusable devices first, then the plugin's preferred ones among the available, then any available.
// The chosen IDs are marked in use by the pod.
func (a *Admitter) devicesToAllocate(ctx context.Context, pod *v1.Pod, container, resource string, required int,
	reusable sets.Set[string]) ([]string, error) {
	if !a.devices.Registered(resource) {
		return nil, fmt.Errorf("cannot allocate unregistered device %s", resource)
	}
	healthy := a.devices.Healthy(resource)
	if len(healthy) == 0 {
		return nil, fmt.Errorf("no healthy devices present; cannot allocate unhealthy devices %s", resource)
	}
	needed := required
	var chosen []string
	take := func(ids []string) bool {
		for _, id := range ids {
			if needed == 0 {
				break
			}
			if !sets.New(chosen...).Has(id) {
				chosen = append(chosen, id)
				needed--
			}
		}
		return needed == 0
	}
	if !take(sets.List(reusable)) {
		var available []string
		for _, id := range healthy {
			if _, taken := a.inUse[resource][id]; !taken {
				available = append(available, id)
			}
		}
		if len(available) < needed {
			return nil, fmt.Errorf("requested number of devices unavailable for %s. Requested: %d, Available: %d",
				resource, needed, len(available))
		}
		if plugin := a.devices.Plugin(resource); plugin != nil && plugin.Options().GetPreferredAllocationAvailable {
			callCtx, cancel := context.WithTimeout(ctx, allocateTimeout)
			preferred, err := plugin.GetPreferredAllocation(callCtx, append(append([]string{}, available...), chosen...),
				chosen, required)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("device plugin GetPreferredAllocation rpc failed with err: %v", err)
			}
			klog.InfoS("GetPreferredAllocation", "pod", klog.KObj(pod), "container", container, "resourceName", resource,
				"available", len(available), "size", required, "preferred", preferred)
			availableSet := sets.New(available...)
			var usable []string
			for _, id := range preferred {
				if availableSet.Has(id) {
					usable = append(usable, id)
				}
			}
			take(usable)
		}
		take(available)
	}
	a.markInUse(resource, chosen, pod.UID)
	return chosen, nil
}

// allocate calls the plugin's Allocate for one container and returns its container response.
func (a *Admitter) allocate(ctx context.Context, pod *v1.Pod, container, resource string, ids []string) (
	*pluginapi.ContainerAllocateResponse, error) {
	plugin := a.devices.Plugin(resource)
	if plugin == nil {
		return nil, fmt.Errorf("unknown Device Plugin %s", resource)
	}
	klog.InfoS("Allocate", "pod", klog.KObj(pod), "container", container, "resourceName", resource, "deviceIDs", ids)
	ctx, cancel := context.WithTimeout(ctx, allocateTimeout)
	defer cancel()
	start := time.Now()
	resp, err := plugin.Allocate(ctx, ids)
	took := time.Since(start)
	if err != nil {
		klog.InfoS("Allocate failed", "pod", klog.KObj(pod), "container", container, "resourceName", resource,
			"deviceIDs", ids, "duration", took, "err", err)
		return nil, err
	}
	if len(resp.ContainerResponses) == 0 {
		return nil, fmt.Errorf("no containers return in allocation response %v", resp)
	}
	cr := resp.ContainerResponses[0]
	mounts := make([]string, 0, len(cr.Mounts))
	for _, m := range cr.Mounts {
		mounts = append(mounts, m.HostPath+":"+m.ContainerPath)
	}
	klog.InfoS("Allocate succeeded", "pod", klog.KObj(pod), "container", container, "resourceName", resource,
		"deviceIDs", ids, "envs", cr.Envs, "mounts", mounts, "devices", len(cr.Devices), "duration", took)
	return cr, nil
}

// fail rejects the pod as the kubelet does when device allocation fails at admission, and gives back its devices.
func (a *Admitter) fail(ctx context.Context, pod *v1.Pod, rec *podRecord, cause error) error {
	rec.done, rec.released = true, true
	rec.rejection = fmt.Sprintf("Allocate failed due to %v, which is unexpected", cause)
	klog.InfoS("Failed to admit pod", "pod", klog.KObj(pod), "podUID", pod.UID, "reason", ReasonUnexpected,
		"message", rec.rejection)
	a.release(pod.UID, "admission failed")
	rec.containers = map[string]map[string][]string{}
	if err := a.state.RemovePod(pod.UID); err != nil {
		klog.ErrorS(err, "Could not remove the pod's state files", "pod", klog.KObj(pod))
	}
	return a.reject(ctx, pod, rec)
}

// reject records the kubelet's Warning event (once) and sets the pod's status to Failed with the kubelet's reason
// and message; an error makes the worker try again.
func (a *Admitter) reject(ctx context.Context, pod *v1.Pod, rec *podRecord) error {
	if !rec.eventCreated {
		now := metav1.Now()
		event := &v1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%v.%x", pod.Name, now.UnixNano()), Namespace: pod.Namespace},
			InvolvedObject: v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
				UID: pod.UID, ResourceVersion: pod.ResourceVersion},
			Reason: ReasonUnexpected, Message: rec.rejection, Type: v1.EventTypeWarning,
			Source:         v1.EventSource{Component: "kubelet", Host: a.node},
			FirstTimestamp: now, LastTimestamp: now, Count: 1,
			ReportingController: "kubelet", ReportingInstance: a.node,
		}
		if _, err := a.client.CoreV1().Events(pod.Namespace).Create(ctx, event, metav1.CreateOptions{}); err != nil {
			klog.ErrorS(err, "Could not record the admission event", "pod", klog.KObj(pod))
		}
		rec.eventCreated = true
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID}, // fails on a new pod of the same name
		"status": map[string]any{
			"phase": v1.PodFailed, "reason": ReasonUnexpected, "message": "Pod was rejected: " + rec.rejection,
		},
	})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch,
		metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("set pod %s/%s Failed: %w", pod.Namespace, pod.Name, err)
	}
	rec.rejection = ""
	return nil
}

// Resync queues every pod of the node again, so a pod that arrived before its resource's plugin registered is
// admitted once it has.
func (a *Admitter) Resync() {
	for _, key := range a.informer.GetStore().ListKeys() {
		a.queue.Add(key)
	}
}
