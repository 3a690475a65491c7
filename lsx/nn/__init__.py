"""Networks: Locatello et al. conv encoder/decoder (GEMM-lowered convs) and MLPs."""
from lsx.nn.autoencoders import (DECODERS, ENCODERS, ConvDecoder, ConvEncoder, MLPDecoder,
                                 MLPEncoder, make_networks)
from lsx.nn.conv import Conv4S2, ConvT4S2, conv4s2, conv_transpose4s2

__all__ = ["ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder", "ENCODERS", "DECODERS",
           "make_networks", "Conv4S2", "ConvT4S2", "conv4s2", "conv_transpose4s2"]
