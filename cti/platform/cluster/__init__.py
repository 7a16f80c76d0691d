"""Clustering over Redis: leases with fencing tokens, node presence, the cross-node event
stream (docs/cluster.md). Used only when `redis_url` is set; a single box needs none of it."""
