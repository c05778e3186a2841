"""Tools around the method: loss landscapes, previews of the training data, the procedural CAD models."""
