"""zenml: ML pipelines whose steps run in the image of their integration."""

from zenml.pipelines import Pipeline, pipeline
from zenml.steps import Step, step

__version__ = "0.1.0"

__all__ = ["Pipeline", "Step", "__version__", "pipeline", "step"]
