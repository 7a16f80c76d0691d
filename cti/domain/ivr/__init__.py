"""The pure IVR engine: flows as data, a step function from events to commands."""
