"""Test harness: a real local control plane, Prometheus and helm on loopback.

Nothing here is a mock: the binaries are the real kube-apiserver, etcd,
kube-controller-manager, kube-scheduler and KWOK built from Go modules by
hack/build-tools.sh, Debian's Prometheus, and helm.
"""
