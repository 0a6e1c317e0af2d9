"""rankbits: how to spend LoRA rank and weight bits, measured."""

__version__ = "0.1.0"
