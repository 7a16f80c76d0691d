"""Listen, whisper, barge: supervisors on live calls (docs/monitoring.md)."""
