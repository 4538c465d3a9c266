"""The operator's machinery: settings, the work queue, the object cache and the handlers that
feed them (kopf watches), and the workers that drain them (reconcilers)."""
