"""Tools around the method: loss landscapes, the preview of the loss camera, the procedural CAD models, the
loss renderer's timing, the loss mesh's difference from the model, the original's pickle export."""
