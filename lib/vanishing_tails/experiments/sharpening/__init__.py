"""Chapter 3, "Sharpening spreads": its spec and the answer policies (:mod:`.policies`)."""
