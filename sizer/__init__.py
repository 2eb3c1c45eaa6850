"""sizer: the smallest language model that does your task well enough on your hardware."""

__version__ = "0.1.0"
