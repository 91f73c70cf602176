"""Reports: plots, the episode viewer, episode tables and memory files."""
