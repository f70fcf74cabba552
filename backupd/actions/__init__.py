"""One module per user-facing action; each orchestrates the engine for the policy's targets."""
