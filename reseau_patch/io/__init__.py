"""The Reseau engine: event loop, sockets, channel pipeline, bootstraps (no greenlets here)."""
