"""dlfunc.models: Flax Linen modules whose layers call :mod:`dlfunc.nn`.

Every model takes ``dtype`` (the compute dtype) and ``param_dtype`` (of its
parameters), float32 by default, as Flax's layers do: ``LeNet(dtype=jnp.bfloat16)``
computes in bfloat16 on float32 master parameters (mixed precision).
"""

from dlfunc.models._bert import BERT, BertConfig, BertForSequenceClassification, BertMeanPooler, mean_pool
from dlfunc.models._classic import CNN, LeNet, MLP
from dlfunc.models._autoencoder import VAE, Autoencoder, ConvAutoencoder, VAEOutput
from dlfunc.models._layers import BatchNorm, Conv, Dense, Dropout, Embed, LayerNorm
from dlfunc.models._sequence import CNN1D, Bidirectional, Recurrent, RNNClassifier
from dlfunc.models._resnet import BasicBlock, Bottleneck, ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from dlfunc.models._vgg import VGG, VGG11, VGG11BN, VGG16, VGG16BN
from dlfunc.models._predict import Predictor

__all__ = [
  "MLP",
  "CNN",
  "LeNet",
  "Dense",
  "Conv",
  "BatchNorm",
  "LayerNorm",
  "Dropout",
  "Embed",
  "ResNet",
  "ResNet18",
  "ResNet34",
  "ResNet50",
  "ResNet101",
  "ResNet152",
  "BasicBlock",
  "Bottleneck",
  "VGG",
  "VGG11",
  "VGG11BN",
  "VGG16",
  "VGG16BN",
  "BERT",
  "BertConfig",
  "BertForSequenceClassification",
  "BertMeanPooler",
  "mean_pool",
  "RNNClassifier",
  "Recurrent",
  "Bidirectional",
  "CNN1D",
  "Autoencoder",
  "ConvAutoencoder",
  "VAE",
  "VAEOutput",
  "Predictor",
]
