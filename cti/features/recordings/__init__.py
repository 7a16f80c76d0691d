"""Call recording: calls of queues with `record: true`, both parties, bridge-up to hang-up."""
