"""Networks of GIPC-GAN: the pseudo-Siamese generator (Table 1) and the LSGAN discriminator (Table 2)."""

from gipc.models.discriminator import Discriminator
from gipc.models.generator import Generator

__all__ = ["Discriminator", "Generator"]
