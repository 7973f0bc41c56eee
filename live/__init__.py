"""Live-commerce server: the composition root (node, app), HTTP adapters, CLI and web pages."""
