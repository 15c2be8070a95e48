"""dlfunc.pretrained: weight loaders with explicit name maps (torchvision, Keras, Hugging Face BERT).

Each loader returns ``(model, variables)`` such that
``model.apply(variables, x, train=False)`` reproduces the source model
(``dlfunc.models.Predictor(model, variables)`` runs it compiled, and on the CPU
autotuned). The core (:func:`assign`) takes a plain mapping ``name -> numpy array``; reading
``.pth`` needs torch, ``.safetensors``, ``.npz`` and Keras files do not.
"""

from dlfunc.pretrained._bert import SentenceEncoder, hf_bert_map, load_hf_bert
from dlfunc.pretrained._core import Entry, WeightLoadError, assign, read_checkpoint
from dlfunc.pretrained._vision import (
  keras_resnet_map,
  keras_vgg_map,
  keras_weights,
  load_keras,
  load_torchvision,
  torchvision_resnet_map,
  torchvision_vgg_map,
  vgg_fc1_chw_to_hwc,
)

__all__ = [
  "load_hf_bert",
  "hf_bert_map",
  "SentenceEncoder",
  "Entry",
  "WeightLoadError",
  "assign",
  "read_checkpoint",
  "load_torchvision",
  "load_keras",
  "keras_weights",
  "torchvision_resnet_map",
  "torchvision_vgg_map",
  "keras_resnet_map",
  "keras_vgg_map",
  "vgg_fc1_chw_to_hwc",
]
