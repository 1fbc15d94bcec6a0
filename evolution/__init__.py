"""facenas evolution package."""
