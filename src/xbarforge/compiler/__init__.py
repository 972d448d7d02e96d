"""The crossbar compiler: lower, partition, duplicate, pack; isaac-like baseline; Mapping."""
