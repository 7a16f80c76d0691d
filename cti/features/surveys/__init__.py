"""After-call satisfaction surveys: by the caller's keypad (IVR), or recorded by an agent."""
