"""Audio I/O: rendering prompts to sound files, and the caller's audio stream (RTP)."""
