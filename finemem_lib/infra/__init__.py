"""Infrastructure: configuration, paths, atomic files, determinism, identities, progress, logging."""
