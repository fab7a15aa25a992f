"""Golden sets: reviewed conversations with human judgements, imported and versioned by content hash."""
