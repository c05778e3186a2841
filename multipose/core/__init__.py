"""The core of the method: rotation geometry, meshes, the depth renderer and its CPU rasterizer, and the
multi-pose loss. Takes plain arguments and small settings dataclasses; imports only :mod:`multipose.infra`."""
