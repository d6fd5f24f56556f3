"""Voice: calls from the first ring to wrap-up (docs/channels/voice.md). Importing one layer must not import the others."""
