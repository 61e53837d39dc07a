"""avatar_operator."""
