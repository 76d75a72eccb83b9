"""Audio data: manifests, validated audio reading, cropping and label alignment."""
