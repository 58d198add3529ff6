"""The engine: training loop, the one prediction path, evaluation, and the datasets a config names.

=======================  ==========================================================================
module                   job
=======================  ==========================================================================
``engine.data``          ``build_data(cfg)``: the run's datasets (synthetic, COCO, MPII)
``engine.prediction``    model -> heatmaps -> decode -> image coordinates (``predict``, ``predict_samples``)
``engine.evaluation``    metrics of a model; ``evaluate(run, split=...)`` per decoder (cached)
``engine.training``      ``train(cfg) -> Run``: the loop, resume, torchrun
=======================  ==========================================================================
"""

from hdm.engine.data import Data, build_data, build_eval_data
from hdm.engine.evaluation import eval_key, evaluate, evaluation_arrays, validate
from hdm.engine.prediction import SamplePredictions, decode_to_image, predict, predict_samples
from hdm.engine.training import train

__all__ = ["Data", "SamplePredictions", "build_data", "build_eval_data", "decode_to_image", "eval_key", "evaluate",
           "evaluation_arrays", "predict", "predict_samples", "train", "validate"]
