"""Pure tensor functions without state: box arithmetic (`heron.ops.boxes`)."""
