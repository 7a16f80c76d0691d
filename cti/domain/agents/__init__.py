"""Agent presence: the pure agent-state machine."""
