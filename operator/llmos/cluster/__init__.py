"""The operator's implementations of the seams: the Kubernetes API as the object store, and
Kubernetes objects (Jobs, Deployments, …, made by the pure builders) as the executor."""
