"""facenas latency package."""
