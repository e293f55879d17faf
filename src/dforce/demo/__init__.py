"""The ``dforce demo``: Diffusion Forcing against teacher forcing on a dynamical system, rolled out 10x the window."""
