"""Input items as the runtime sees them: text, or an image or PDF reference."""
