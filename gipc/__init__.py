"""GIPC-GAN: gradient and intensity preserving, ratio-consistent GAN for multi-focus image fusion."""

__version__ = "0.1.0"
