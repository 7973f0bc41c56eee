"""Live-commerce server: kernel (config, auth, store, metrics, events) and composition root."""
