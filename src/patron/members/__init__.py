"""Members, stores and consents: the shared customer database of a brand."""
