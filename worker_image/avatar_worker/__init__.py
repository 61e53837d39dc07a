"""avatar_worker."""
