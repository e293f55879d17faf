"""The ``dforce demo``: Diffusion Forcing against teacher forcing on the Lorenz-63 attractor."""
