"""Clustering's pure rules: leases with fencing tokens (docs/cluster.md)."""
