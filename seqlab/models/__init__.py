"""In-tree model plugins, one per file; ``seqlab.registry`` imports them by name on first use."""
