# Settings of the local test cluster (hack/cluster); override any of them in the environment.
# shellcheck shell=bash
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/llmos-cluster}
CLUSTER_NAME=${CLUSTER_NAME:-llmos-test}
NODE_NAME=${NODE_NAME:-llmos-node}
BRIDGE=${BRIDGE:-llmos0}
# The cluster's own networks: a bridge made by this script, never an existing one.
HOST_IP=${HOST_IP:-10.88.0.1}
POD_CIDR=${POD_CIDR:-10.88.0.0/16}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
API_SERVICE_IP=${API_SERVICE_IP:-10.96.0.1}
DNS_SERVICE_IP=${DNS_SERVICE_IP:-10.96.0.10}
API_PORT=${API_PORT:-6443}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4}
COREDNS_BIN=${COREDNS_BIN:-${LLMOS_CACHE:-${HOME}/.cache/llmos}/coredns/${COREDNS_VERSION}/bin/coredns}
CONTAINERD_SOCK=${CLUSTER_DIR}/containerd/containerd.sock
KUBECONFIG_FILE=${CLUSTER_DIR}/admin.kubeconfig
LOG_DIR=${CLUSTER_DIR}/logs
PID_DIR=${CLUSTER_DIR}/pids
