"""Built-in backends, one module each; imported only when selected (see vpd.tools.registry)."""
