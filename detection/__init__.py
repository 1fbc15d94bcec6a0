"""facenas detection package."""
