"""api_shim."""
