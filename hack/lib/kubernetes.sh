# Kubernetes versions and where the locally built binaries live (kept across clones, so CI
# on the same machine reuses them).
# shellcheck shell=bash
K8S_VERSION=${K8S_VERSION:-v1.34.4}
K8S_STAGING_VERSION=${K8S_STAGING_VERSION:-v0.${K8S_VERSION#v1.}}
LLMOS_CACHE=${LLMOS_CACHE:-${HOME}/.cache/llmos}
K8S_BIN=${K8S_BIN:-${LLMOS_CACHE}/kubernetes/${K8S_VERSION}/bin}
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# The staging repositories published as their own modules; k8s.io/kubernetes points them at
# ./staging with replace directives, so a module that builds it must pin them itself.
K8S_STAGING_MODULES=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller
)
