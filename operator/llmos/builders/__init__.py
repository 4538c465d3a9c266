"""Pure builders: API objects in, Kubernetes manifests (dicts) out. Golden-tested; the
operator applies what they return with server-side apply."""
