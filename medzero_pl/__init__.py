"""medzero_pl: R1-Zero style GRPO for medical reasoning on PyTorch Lightning."""

__version__ = "0.1.0"
