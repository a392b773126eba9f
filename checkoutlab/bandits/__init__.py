"""Payment-method ordering: the OrderingPolicy seam and its implementations."""
