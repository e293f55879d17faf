"""dforce: Diffusion Forcing in plain PyTorch.

The public API::

    from dforce import DiffusionForcing, Transformer, SamplingConfig
"""

from dforce.backbones import Transformer
from dforce.guidance import ClassifierFreeGuidance
from dforce.model import DiffusionForcing
from dforce.sampling import SamplingConfig, scheduling_matrix

__version__ = "0.1.0"
__all__ = ["ClassifierFreeGuidance", "DiffusionForcing", "SamplingConfig", "Transformer", "scheduling_matrix", "__version__"]
